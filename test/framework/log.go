package framework

import (
	"bytes"
	"strings"
	"sync"
)

// lineWriter passes whole lines to log (if any) and keeps the last few for errors.
type lineWriter struct {
	log  func(string)
	mu   sync.Mutex
	buf  bytes.Buffer
	last []string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			w.buf.WriteString(line)
			return len(p), nil
		}
		line = strings.TrimRight(line, "\n")
		if w.log != nil {
			w.log(line)
		}
		w.last = append(w.last, line)
		if len(w.last) > 20 {
			w.last = w.last[1:]
		}
	}
}

func (w *lineWriter) tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.last, "\n")
}
