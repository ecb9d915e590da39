package csi

import (
	"context"
	"errors"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/kvinject/kvinject/pkg/contract"
	"github.com/kvinject/kvinject/pkg/identity"
	"github.com/kvinject/kvinject/pkg/keyvault"
)

// testGID is the fsGroup of the tests: a foreign group as root, else the user's own
// group (the only one a non-root chown may set), so the package tests need no root.
var testGID = func() int {
	if os.Geteuid() == 0 {
		return 2000
	}
	return os.Getgid()
}()

func statGID(t *testing.T, path string) int {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return int(st.Gid)
}

// fakeMounter records tmpfs mounts in memory; the files land in the plain directory.
type fakeMounter struct {
	mu      sync.Mutex
	mounted map[string]int64
	failOn  string
}

func newFakeMounter() *fakeMounter { return &fakeMounter{mounted: map[string]int64{}} }

func (m *fakeMounter) MountTmpfs(target string, size int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if target == m.failOn {
		return errors.New("mount failed")
	}
	m.mounted[target] = size
	return nil
}

func (m *fakeMounter) Unmount(target string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.mounted[target]; !ok {
		return errors.New("not mounted")
	}
	delete(m.mounted, target)
	return nil
}

func (m *fakeMounter) IsMountPoint(target string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.mounted[target]
	return ok, nil
}

// fakeFetcher answers with files made by fn and records what it was asked.
type fakeFetcher struct {
	mu    sync.Mutex
	fn    func(p Parameters, id identity.Request) ([]keyvault.File, error)
	calls []identity.Request
	opts  []FetchOptions
}

func (f *fakeFetcher) Fetch(_ context.Context, p Parameters, id identity.Request, o FetchOptions) (*keyvault.Fetched, error) {
	f.mu.Lock()
	f.calls = append(f.calls, id)
	f.opts = append(f.opts, o)
	fn := f.fn
	f.mu.Unlock()
	files, err := fn(p, id)
	if err != nil {
		return nil, err
	}
	return &keyvault.Fetched{Files: files}, nil
}

// valuesFetcher renders each object as values[name] (mode 0644).
func valuesFetcher(values map[string]string) *fakeFetcher {
	return &fakeFetcher{fn: func(p Parameters, _ identity.Request) ([]keyvault.File, error) {
		var out []keyvault.File
		for _, o := range p.Objects {
			v, ok := values[o.Name]
			if !ok {
				return nil, &keyvault.ObjectError{Vault: p.Vault, Object: o.Name, Type: o.ObjectType(), Status: 404, Code: "SecretNotFound", Class: keyvault.ErrNotFound}
			}
			out = append(out, keyvault.File{Name: o.FileName(), Data: []byte(v), Mode: o.Mode(0o644), Object: o})
		}
		return out, nil
	}}
}

// recordedEvent is one event of fakeEvents.
type recordedEvent struct{ pod, reason, message string }

type fakeEvents struct {
	mu     sync.Mutex
	events []recordedEvent
}

func (e *fakeEvents) Event(_ context.Context, pod PodInfo, _, reason, message string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.events = append(e.events, recordedEvent{pod.Namespace + "/" + pod.Name, reason, message})
}

const (
	testPodUID   = "9d1f2c3b-0000-4000-8000-000000000001"
	testSAToken  = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6ZGVmYXVsdDp3aSJ9.c2lnbmF0dXJlLXRoYXQtaXMtc2VjcmV0"
	testTenant   = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	testClientID = "2c1e5f3a-9b7d-4e2f-8a61-0d3c4b5a6e71"
)

func tutorialObjects(t *testing.T) string {
	t.Helper()
	s, err := contract.MarshalObjects([]contract.Object{
		{Name: "DatabaseLogin", Alias: "DATABASE_LOGIN", Type: contract.TypeSecret},
		{Name: "DatabasePassword", Alias: "DATABASE_PASSWORD", Type: contract.TypeSecret, FilePermission: "0440"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// publishRequest is a kubelet-like request for the tutorial volume with pod identity.
func publishRequest(t *testing.T, root string) *csi.NodePublishVolumeRequest {
	t.Helper()
	tokens := `{"api://AzureADTokenExchange":{"token":"` + testSAToken + `","expirationTimestamp":"2026-11-27T08:00:00Z"}}`
	return &csi.NodePublishVolumeRequest{
		VolumeId:   "csi-0123456789abcdef",
		TargetPath: KubeletTargetPath(root, testPodUID, "kvinject-secrets"),
		Readonly:   true,
		VolumeCapability: &csi.VolumeCapability{
			AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{VolumeMountGroup: strconv.Itoa(testGID)}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		},
		VolumeContext: map[string]string{
			contract.AttrKeyVaultName:      "az-key-vault-demo",
			contract.AttrTenantID:          testTenant,
			contract.AttrUsePodIdentity:    "true",
			contract.AttrObjects:           tutorialObjects(t),
			contract.ContextPodName:        "nginx-secrets-store",
			contract.ContextPodNamespace:   "default",
			contract.ContextPodUID:         testPodUID,
			contract.ContextServiceAccount: "default",
			contract.ContextEphemeral:      "true",
			contract.ContextTokens:         tokens,
		},
	}
}
