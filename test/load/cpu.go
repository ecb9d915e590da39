package load

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cpuSample is the CPU time used so far by this process and by the whole machine.
type cpuSample struct {
	at      time.Time
	process time.Duration
	busy    time.Duration // machine: all CPUs, not idle; 0 if /proc/stat is unreadable
}

func sampleCPU() cpuSample {
	s := cpuSample{at: time.Now()}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.process = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	s.busy = machineBusy()
	return s
}

// since returns the CPU used between s0 and s, in cores (CPU seconds per second), by
// this process and by the machine; zero when either sample is missing.
func (s cpuSample) since(s0 cpuSample) (process, machine float64) {
	wall := s.at.Sub(s0.at)
	if s0.at.IsZero() || s.at.IsZero() || wall <= 0 {
		return 0, 0
	}
	process = float64(s.process-s0.process) / float64(wall)
	if s.busy > 0 && s0.busy > 0 {
		machine = float64(s.busy-s0.busy) / float64(wall)
	}
	return process, machine
}

// machineBusy reads the non-idle time of all CPUs from /proc/stat (Linux; USER_HZ is
// 100 on every Linux architecture Go supports).
func machineBusy() time.Duration {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0
	}
	fields := strings.Fields(sc.Text())
	if len(fields) < 5 || fields[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, f := range fields[1:] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0
		}
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest times are already in user
			continue
		}
		busy += n
	}
	return time.Duration(busy) * 10 * time.Millisecond
}
