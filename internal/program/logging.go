package program

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/go-logr/logr"
	"github.com/go-logr/zapr"
	"github.com/spf13/pflag"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"k8s.io/klog/v2"
)

// LogOptions are the log flags both programs share. The logger is zap behind logr,
// built here rather than through controller-runtime's helper, which would link
// apimachinery into the node plugin (measured: 3.4 MB more binary on every node).
type LogOptions struct {
	// Level is "error", "info", "debug" (verbosity 1) or a verbosity 0-10: log lines
	// at V(n) are written when n <= the verbosity.
	Level string
	// Format is "json" (one JSON object a line, for log pipelines) or "text" (for a
	// terminal).
	Format string
}

// BindFlags binds the log flags to fs.
func (o *LogOptions) BindFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Level, "log-level", o.Level, "Log verbosity: error, info, debug, or a number 0-10 (higher logs more; 10 logs every CSI call). No level ever logs a token or secret value.")
	fs.StringVar(&o.Format, "log-format", o.Format, "Log format: json (one object a line: level, ts, logger, msg, then key/value pairs) or text.")
}

// zapLevel turns Level into zap's level: verbosity n is zap level -n.
func (o *LogOptions) zapLevel() (zapcore.Level, error) {
	switch strings.ToLower(o.Level) {
	case "error":
		return zapcore.ErrorLevel, nil
	case "", "info":
		return zapcore.InfoLevel, nil
	case "debug":
		return zapcore.DebugLevel, nil
	}
	n, err := strconv.Atoi(o.Level)
	if err != nil || n < 0 || n > 10 {
		return 0, fmt.Errorf("--log-level %q: use error, info, debug or a number 0-10", o.Level)
	}
	return zapcore.Level(-n), nil
}

// Validate checks the flags.
func (o *LogOptions) Validate() error {
	if _, err := o.zapLevel(); err != nil {
		return err
	}
	if o.Format != "json" && o.Format != "text" {
		return fmt.Errorf("--log-format %q: use json or text", o.Format)
	}
	return nil
}

// NewLogger returns the logger both programs log through, writing to w, and makes it
// klog's logger too, so that every line (the programs' and the libraries') has the same
// keys: level, ts, logger, msg, then the key/value pairs. o must have passed Validate.
func NewLogger(o LogOptions, w io.Writer) logr.Logger {
	level, _ := o.zapLevel()
	cfg := zap.NewProductionEncoderConfig()
	cfg.TimeKey, cfg.EncodeTime = "ts", zapcore.RFC3339NanoTimeEncoder
	enc := zapcore.NewJSONEncoder(cfg)
	if o.Format == "text" {
		cfg.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(cfg)
	}
	core := zapcore.NewCore(enc, zapcore.AddSync(w), zap.NewAtomicLevelAt(level))
	log := zapr.NewLogger(zap.New(core, zap.AddStacktrace(zapcore.PanicLevel)))
	klog.SetLoggerWithOptions(log, klog.ContextualLogger(true))
	return log
}
