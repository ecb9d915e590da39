package csi

import (
	"math/rand/v2"
	"sync"
	"time"
)

// Defaults of the rotation schedule.
const (
	DefaultRotationPollInterval = 2 * time.Minute
	// rotationJitter spreads the volumes' refreshes over a tenth of the interval, so
	// that volumes published together do not all ask Key Vault at the same moment.
	rotationJitter = 0.1
)

// schedule decides when a republish asks Key Vault. The kubelet republishes every
// volume about once a minute (requiresRepublish); a republish before the volume's
// refresh is due reads nothing, so rotation costs one refresh per volume per interval.
// A volume whose parameters or identity changed, or that the plugin has not seen since
// it started, is due at once. Safe for concurrent use.
type schedule struct {
	interval time.Duration
	now      func() time.Time
	mu       sync.Mutex
	volumes  map[string]volumeState // by target path
}

// volumeState is what the schedule remembers of a published volume.
type volumeState struct {
	// params identifies the parameters and identity the files were fetched for.
	params string
	// next is when the next refresh is due.
	next time.Time
	// versions are the object versions the files hold, by file name.
	versions map[string]string
	// failingSince is when the first refresh failed since the last that succeeded
	// (zero while refreshes succeed).
	failingSince time.Time
}

func newSchedule(interval time.Duration, now func() time.Time) *schedule {
	return &schedule{interval: interval, now: now, volumes: map[string]volumeState{}}
}

// due reports whether the volume at target must be refreshed now, and whether its
// parameters changed since the last refresh (then every object is read afresh).
func (s *schedule) due(target, params string) (due, changed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.volumes[target]
	if !ok {
		return true, false
	}
	if v.params != params {
		return true, true
	}
	return !s.now().Before(v.next), false
}

// refreshed records a successful refresh and schedules the next one, jittered. It
// returns the versions the files held before.
func (s *schedule) refreshed(target, params string, versions map[string]string) map[string]string {
	jitter := time.Duration(rand.Float64() * rotationJitter * float64(s.interval))
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.volumes[target].versions
	s.volumes[target] = volumeState{params: params, next: s.now().Add(s.interval + jitter), versions: versions}
	return prev
}

// failed records a refresh that failed (the volume keeps its files). The volume stays
// due, so the next republish tries again.
func (s *schedule) failed(target string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.volumes[target]
	if v.failingSince.IsZero() {
		v.failingSince = s.now()
	}
	s.volumes[target] = v
}

// failing returns how many volumes' refreshes have failed since their last success,
// and the longest time one of them has been failing.
func (s *schedule) failing() (n int, longest time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for _, v := range s.volumes {
		if v.failingSince.IsZero() {
			continue
		}
		n++
		longest = max(longest, now.Sub(v.failingSince))
	}
	return n, longest
}

// forget drops an unpublished volume.
func (s *schedule) forget(target string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.volumes, target)
}
