package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kvinject/kvinject/internal/testkit"
)

// Proc is a process the harness started, identified by PID and start time (so a
// reused PID is never signalled).
type Proc struct {
	Name      string `json:"name"`
	PID       int    `json:"pid"`
	StartTime string `json:"startTime"`
	Log       string `json:"log"`
}

// State is everything Down needs to undo Up, saved as <run>/state.json after every
// step, so a failed or interrupted Up, or another process, can tear down.
type State struct {
	// Processes in start order; Down stops them in reverse.
	Processes []Proc `json:"processes"`
	// AddedAddress is the CIDR Up added to lo ("" = none).
	AddedAddress string `json:"addedAddress,omitempty"`
	// HostPathsCreated are paths outside the state directory that did not exist before
	// Up and that the kubelet or containerd create regardless of their flags.
	HostPathsCreated []string `json:"hostPathsCreated,omitempty"`
	// IPForward is /proc/sys/net/ipv4/ip_forward before Up, restored by Down.
	IPForward string `json:"ipForward,omitempty"`
	// NetnsBefore are the entries of /var/run/netns before Up; Down removes only others.
	NetnsBefore []string `json:"netnsBefore,omitempty"`
}

func loadState(file string) (*State, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("decode %s: %w", file, err)
	}
	return &s, nil
}

func (s *State) save(file string) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, file)
}

// startDetached starts bin in its own session with output to logFile, so it outlives
// the calling process (make e2e-up returns, the cluster stays). exited is closed when
// the process ends while the caller still runs.
func startDetached(name, bin string, args, env []string, logFile string) (Proc, <-chan struct{}, error) {
	f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return Proc{}, nil, err
	}
	defer f.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return Proc{}, nil, err
	}
	defer devnull.Close()
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return Proc{}, nil, fmt.Errorf("start %s: %w", name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	st, _ := procStartTime(cmd.Process.Pid)
	return Proc{Name: name, PID: cmd.Process.Pid, StartTime: st, Log: logFile}, exited, nil
}

// procStartTime is field 22 of /proc/<pid>/stat (start time in clock ticks).
func procStartTime(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", errors.New("bad stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return "", errors.New("bad stat")
	}
	return f[19], nil
}

// alive reports whether p is still the running (not zombie) process recorded.
func (p Proc) alive() bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.PID))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || len(s) < i+3 || s[i+2] == 'Z' {
		return false
	}
	st, err := procStartTime(p.PID)
	return err == nil && (p.StartTime == "" || st == p.StartTime)
}

// stop sends SIGTERM, waits up to grace, then SIGKILL and waits again.
func (p Proc) stop(grace time.Duration) error {
	if !p.alive() {
		return nil
	}
	_ = syscall.Kill(p.PID, syscall.SIGTERM)
	if waitGone(p, grace) {
		return nil
	}
	_ = syscall.Kill(p.PID, syscall.SIGKILL)
	if waitGone(p, 5*time.Second) {
		return nil
	}
	return fmt.Errorf("%s (pid %d) did not exit", p.Name, p.PID)
}

func waitGone(p Proc, d time.Duration) bool {
	return testkit.Poll(context.Background(), 50*time.Millisecond, d, p.Name+" exits", func(context.Context) error {
		if p.alive() {
			return errors.New("alive")
		}
		return nil
	}) == nil
}

// tail returns the last n lines of a log file, for error messages.
func tail(file string, n int) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// pidsWhere lists the PIDs in /proc whose command line contains every one of subs;
// used to find containerd's shims, which daemonise away from the recorded PIDs but
// carry the harness's own containerd socket path in their arguments.
func pidsWhere(subs ...string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(cmd, s)
		}
		if ok {
			pids = append(pids, pid)
		}
	}
	return pids
}
