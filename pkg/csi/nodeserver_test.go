package csi

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kvinject/kvinject/pkg/contract"
	"github.com/kvinject/kvinject/pkg/identity"
	"github.com/kvinject/kvinject/pkg/keyvault"
)

type nodeFixture struct {
	clock   *fakeClock
	root    string
	mounter *fakeMounter
	fetcher *fakeFetcher
	events  *fakeEvents
	metrics *Metrics
	node    *NodeServer
}

func newNodeFixture(t *testing.T, fetcher *fakeFetcher) *nodeFixture {
	t.Helper()
	f := &nodeFixture{clock: &fakeClock{now: time.Unix(1_800_000_000, 0)}, root: t.TempDir(), mounter: newFakeMounter(), fetcher: fetcher, events: &fakeEvents{}, metrics: NewMetrics()}
	var err error
	f.node, err = NewNodeServer(NodeOptions{
		NodeID: "node-1", KubeletRoot: f.root, TmpfsBytes: 1 << 20, RotationPollInterval: time.Minute, Now: f.clock.Now,
		Mounter: f.mounter, Fetcher: fetcher, Events: f.events, Metrics: f.metrics, Writer: Writer{Grace: time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

// advance moves the clock past the next refresh of every volume (interval plus jitter).
func (f *nodeFixture) advance() {
	f.clock.mu.Lock()
	f.clock.now = f.clock.now.Add(2 * time.Minute)
	f.clock.mu.Unlock()
}

func (f *nodeFixture) publishCount(outcome string) int {
	return int(testutil.ToFloat64(f.metrics.publishes.WithLabelValues(outcome)))
}

// refreshFailing is what /metrics says of the volumes failing to refresh.
func (f *nodeFixture) refreshFailing(t *testing.T) string {
	t.Helper()
	families, err := f.metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, mf := range families {
		if n := mf.GetName(); n == "kvinject_csi_node_volumes_refresh_failing" || n == "kvinject_csi_node_refresh_failing_seconds" {
			got = append(got, fmt.Sprintf("%s=%g", n, mf.GetMetric()[0].GetGauge().GetValue()))
		}
	}
	return strings.Join(got, " ")
}

func TestNodePublishValidation(t *testing.T) {
	t.Parallel()
	f := newNodeFixture(t, valuesFetcher(map[string]string{"DatabaseLogin": "MyDBLoginName", "DatabasePassword": "MyP@ssword123456"}))
	cases := []struct {
		name   string
		mutate func(r *csi.NodePublishVolumeRequest)
		code   codes.Code
		msg    string
	}{
		{"no volume id", func(r *csi.NodePublishVolumeRequest) { r.VolumeId = "" }, codes.InvalidArgument, "volume_id is required"},
		{"no target", func(r *csi.NodePublishVolumeRequest) { r.TargetPath = "" }, codes.InvalidArgument, "target_path is required"},
		{"no capability", func(r *csi.NodePublishVolumeRequest) { r.VolumeCapability = nil }, codes.InvalidArgument, "volume_capability is required"},
		{"block", func(r *csi.NodePublishVolumeRequest) {
			r.VolumeCapability.AccessType = &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}
		}, codes.InvalidArgument, "only mount volumes"},
		{"not read-only", func(r *csi.NodePublishVolumeRequest) { r.Readonly = false }, codes.InvalidArgument, "must be read-only"},
		{"persistent volume", func(r *csi.NodePublishVolumeRequest) { r.VolumeContext[contract.ContextEphemeral] = "false" }, codes.InvalidArgument, "inline (ephemeral) volumes only"},
		{"no pod info", func(r *csi.NodePublishVolumeRequest) { delete(r.VolumeContext, contract.ContextPodUID) }, codes.InvalidArgument, "podInfoOnMount"},
		{"target of another pod", func(r *csi.NodePublishVolumeRequest) {
			r.TargetPath = KubeletTargetPath(f.root, "other-uid", "kvinject-secrets")
		}, codes.InvalidArgument, "does not belong to pod UID"},
		{"target outside the kubelet", func(r *csi.NodePublishVolumeRequest) { r.TargetPath = "/etc/kvinject/mount" }, codes.InvalidArgument, "not under the kubelet directory"},
		{"target with dot-dot", func(r *csi.NodePublishVolumeRequest) {
			r.TargetPath = f.root + "/pods/" + testPodUID + "/volumes/kubernetes.io~csi/../../../../x/mount"
		}, codes.InvalidArgument, "not a clean absolute path"},
		{"bad fsGroup", func(r *csi.NodePublishVolumeRequest) { r.VolumeCapability.GetMount().VolumeMountGroup = "wheel" }, codes.InvalidArgument, "not a group ID"},
		{"no vault", func(r *csi.NodePublishVolumeRequest) { delete(r.VolumeContext, contract.AttrKeyVaultName) }, codes.InvalidArgument, "keyvaultName is required"},
		{"attack alias", func(r *csi.NodePublishVolumeRequest) {
			r.VolumeContext[contract.AttrObjects] = "array:\n  - |\n    objectName: x\n    objectAlias: ../../etc/passwd\n"
		}, codes.InvalidArgument, "objectAlias"},
		{"node identity", func(r *csi.NodePublishVolumeRequest) {
			r.VolumeContext[contract.AttrUsePodIdentity] = "false"
			r.VolumeContext[contract.AttrUseVMManagedIdentity] = "true"
		}, codes.InvalidArgument, "node's managed identity"},
		{"no identity", func(r *csi.NodePublishVolumeRequest) { r.VolumeContext[contract.AttrUsePodIdentity] = "false" }, codes.InvalidArgument, "names no identity"},
		{"class without API server", func(r *csi.NodePublishVolumeRequest) {
			r.VolumeContext = map[string]string{contract.AttrSecretProviderClass: "azure-kvname",
				contract.ContextPodName: "p", contract.ContextPodNamespace: "default", contract.ContextPodUID: testPodUID}
		}, codes.FailedPrecondition, "no API server access"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := publishRequest(t, f.root)
			tc.mutate(req)
			_, err := f.node.NodePublishVolume(t.Context(), req)
			st, _ := status.FromError(err)
			if st.Code() != tc.code || !strings.Contains(st.Message(), tc.msg) {
				t.Fatalf("got %v %q, want %v containing %q", st.Code(), st.Message(), tc.code, tc.msg)
			}
			if strings.Contains(st.Message(), testSAToken) {
				t.Fatal("the error quotes the service-account token")
			}
		})
	}
	if len(f.mounter.mounted) != 0 {
		t.Fatalf("a refused request mounted %v", f.mounter.mounted)
	}
	if n := f.publishCount(OutcomeFailed); n != len(cases) {
		t.Fatalf("failed publishes = %d, want %d", n, len(cases))
	}
}

func TestNodePublishRepublishUnpublish(t *testing.T) {
	t.Parallel()
	values := map[string]string{"DatabaseLogin": "MyDBLoginName", "DatabasePassword": "MyP@ssword123456"}
	fetch := valuesFetcher(values)
	f := newNodeFixture(t, fetch)
	ctx := t.Context()
	req := publishRequest(t, f.root)
	target := req.TargetPath

	if _, err := f.node.NodePublishVolume(ctx, req); err != nil {
		t.Fatalf("publish: %v", err)
	}
	want := map[string]string{"DATABASE_LOGIN": "MyDBLoginName", "DATABASE_PASSWORD": "MyP@ssword123456"}
	if got := listVolume(t, target); !equalMaps(got, want) {
		t.Fatalf("files %v, want %v", got, want)
	}
	if size := f.mounter.mounted[target]; size != 1<<20 {
		t.Fatalf("tmpfs size %d, want %d", size, 1<<20)
	}
	fi, _ := os.Stat(filepath.Join(target, "DATABASE_PASSWORD"))
	if fi.Mode().Perm() != 0o440 || statGID(t, filepath.Join(target, "DATABASE_PASSWORD")) != testGID {
		t.Fatalf("DATABASE_PASSWORD mode %v gid %d, want 0440 and fsGroup %d", fi.Mode().Perm(), statGID(t, filepath.Join(target, "DATABASE_PASSWORD")), testGID)
	}
	if got := fetch.calls[0]; got.Mode != identity.ModePodIdentity || got.PodName != "nginx-secrets-store" || got.PodNamespace != "default" {
		t.Fatalf("identity asked for %+v, want the pod's own pod identity", got)
	}

	// Republish before the refresh is due: nothing is asked of Key Vault.
	values["DatabasePassword"] = "rotated-password"
	if _, err := f.node.NodePublishVolume(ctx, req); err != nil {
		t.Fatalf("republish: %v", err)
	}
	if len(fetch.calls) != 1 || listVolume(t, target)["DATABASE_PASSWORD"] != "MyP@ssword123456" {
		t.Fatalf("a republish before the interval fetched: %d fetches", len(fetch.calls))
	}
	values["DatabasePassword"] = "MyP@ssword123456"

	// Republish, due, unchanged: read (from the node's objects, not afresh), not rewritten.
	gen, _ := os.Readlink(filepath.Join(target, DataLink))
	f.advance()
	if _, err := f.node.NodePublishVolume(ctx, req); err != nil {
		t.Fatalf("republish: %v", err)
	}
	if g, _ := os.Readlink(filepath.Join(target, DataLink)); g != gen {
		t.Fatal("an unchanged republish rewrote the files")
	}
	if len(fetch.calls) != 2 || !fetch.opts[0].Fresh || fetch.opts[1].Fresh || fetch.opts[1].MaxBytes != 1<<20/2-64<<10 {
		t.Fatalf("fetches %+v: the first publish reads afresh, a refresh may reuse; both within half the tmpfs", fetch.opts)
	}

	// Republish, rotated: swapped, and a Normal event names the object and its version.
	values["DatabasePassword"] = "rotated-password"
	f.advance()
	if _, err := f.node.NodePublishVolume(ctx, req); err != nil {
		t.Fatalf("rotate: %v", err)
	}
	want["DATABASE_PASSWORD"] = "rotated-password"
	if got := listVolume(t, target); !equalMaps(got, want) {
		t.Fatalf("after rotation %v, want %v", got, want)
	}
	if n := len(f.events.events); n != 1 || f.events.events[0].reason != ReasonRefreshed ||
		f.events.events[0].message != `Key Vault objects refreshed: DATABASE_PASSWORD (secret "DatabasePassword", version latest)` {
		t.Fatalf("events %+v", f.events.events)
	}
	f.events.events = nil
	f.advance()

	// Republish, Key Vault fails: the old set stays, success, metric and event.
	fetch.mu.Lock()
	answering := fetch.fn
	fetch.fn = func(p Parameters, _ identity.Request) ([]keyvault.File, error) {
		return nil, &keyvault.ObjectError{Vault: p.Vault, Object: "DatabasePassword", Type: contract.TypeSecret, Status: 403, Code: "ForbiddenByPolicy", Class: keyvault.ErrForbidden, Identity: "pod identity of pod default/nginx-secrets-store"}
	}
	fetch.mu.Unlock()
	if _, err := f.node.NodePublishVolume(ctx, req); err != nil {
		t.Fatalf("failed refresh returned %v, want success with the old files", err)
	}
	if got := listVolume(t, target); !equalMaps(got, want) {
		t.Fatalf("after failed refresh %v, want %v", got, want)
	}
	if len(f.events.events) != 1 {
		t.Fatalf("events %v, want one", f.events.events)
	}
	ev := f.events.events[0]
	wantMsg := `Key Vault refresh failed; the volume keeps its previous files: vault "az-key-vault-demo": secret "DatabasePassword": Key Vault answered 403 ForbiddenByPolicy: pod identity of pod default/nginx-secrets-store lacks get permission on secrets in vault "az-key-vault-demo"; grant it get on secrets (access policy) or a Key Vault Secrets User role`
	if ev.pod != "default/nginx-secrets-store" || ev.reason != ReasonRefreshFailed || ev.message != wantMsg {
		t.Fatalf("event %+v,\nwant message %q", ev, wantMsg)
	}
	// The refresh keeps failing: the gauges count the volume and how long it has failed.
	const failing0 = "kvinject_csi_node_refresh_failing_seconds=0 kvinject_csi_node_volumes_refresh_failing=1"
	if got := f.refreshFailing(t); got != failing0 {
		t.Fatalf("after one failed refresh: %s, want %s", got, failing0)
	}
	f.advance()
	if _, err := f.node.NodePublishVolume(ctx, req); err != nil {
		t.Fatalf("second failed refresh: %v", err)
	}
	const failing120 = "kvinject_csi_node_refresh_failing_seconds=120 kvinject_csi_node_volumes_refresh_failing=1"
	if got := f.refreshFailing(t); got != failing120 {
		t.Fatalf("two minutes into failing: %s, want %s", got, failing120)
	}
	f.events.events = nil

	// A failed refresh that asks for a file the old set lacks is an error.
	req2 := proto.Clone(req).(*csi.NodePublishVolumeRequest)
	objs, _ := contract.MarshalObjects([]contract.Object{{Name: "DatabaseLogin", Alias: "DATABASE_LOGIN"}, {Name: "NewSecret"}})
	req2.VolumeContext[contract.AttrObjects] = objs
	_, err := f.node.NodePublishVolume(ctx, req2)
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("incomplete refresh: %v, want PermissionDenied", err)
	}
	if got := listVolume(t, target); !equalMaps(got, want) {
		t.Fatalf("after incomplete refresh %v, want %v", got, want)
	}

	// Key Vault answers again: the refresh succeeds and the gauges return to 0.
	fetch.mu.Lock()
	fetch.fn = answering
	fetch.mu.Unlock()
	if _, err := f.node.NodePublishVolume(ctx, req); err != nil {
		t.Fatalf("recovered refresh: %v", err)
	}
	const recovered = "kvinject_csi_node_refresh_failing_seconds=0 kvinject_csi_node_volumes_refresh_failing=0"
	if got := f.refreshFailing(t); got != recovered {
		t.Fatalf("after a successful refresh: %s, want %s", got, recovered)
	}

	for outcome, n := range map[string]int{OutcomePublished: 1, OutcomeNotDue: 1, OutcomeUnchanged: 2, OutcomeRefreshed: 1, OutcomeRefreshFailed: 2, OutcomeFailed: 1} {
		if got := f.publishCount(outcome); got != n {
			t.Errorf("publishes{outcome=%s} = %d, want %d", outcome, got, n)
		}
	}

	// Unpublish twice: unmounted, removed, idempotent.
	for i := 0; i < 2; i++ {
		if _, err := f.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: req.VolumeId, TargetPath: target}); err != nil {
			t.Fatalf("unpublish %d: %v", i, err)
		}
	}
	if _, err := os.Lstat(target); !os.IsNotExist(err) {
		t.Fatalf("target still exists: %v", err)
	}
	if len(f.mounter.mounted) != 0 {
		t.Fatalf("still mounted: %v", f.mounter.mounted)
	}
}

func TestNodePublishFirstFailureLeavesNothing(t *testing.T) {
	t.Parallel()
	f := newNodeFixture(t, valuesFetcher(map[string]string{"DatabaseLogin": "MyDBLoginName"}))
	req := publishRequest(t, f.root)
	_, err := f.node.NodePublishVolume(t.Context(), req)
	st, _ := status.FromError(err)
	wantMsg := `vault "az-key-vault-demo": secret "DatabasePassword": Key Vault answered 404 SecretNotFound: there is no secret named "DatabasePassword" in vault "az-key-vault-demo"; check objectName and objectType`
	if st.Code() != codes.NotFound || st.Message() != wantMsg {
		t.Fatalf("got %v %q, want NotFound %q", st.Code(), st.Message(), wantMsg)
	}
	if _, err := os.Lstat(req.TargetPath); !os.IsNotExist(err) {
		t.Fatalf("target exists after a failed first publish: %v", err)
	}
	if len(f.mounter.mounted) != 0 {
		t.Fatalf("mounted after a failed publish: %v", f.mounter.mounted)
	}
}

// TestNodePublishAttackNames sends every attack class of reference/csi.md as an object
// alias (and, where the grammar allows, as a name) through NodePublishVolume: each is
// refused with InvalidArgument and nothing under the kubelet root changes.
func TestNodePublishAttackNames(t *testing.T) {
	t.Parallel()
	f := newNodeFixture(t, valuesFetcher(map[string]string{"a": "value"}))
	before := snapshotTree(t, f.root)
	for _, alias := range []string{"../x", "/etc/x", "a/../../b", `..\x`, `a\b`, "..data", ".", "..", "...", "....", "..2026_01_01_00_00_00.1", "x/", "", " ../x"} {
		req := publishRequest(t, f.root)
		req.VolumeContext[contract.AttrObjects] = "array:\n  - |\n    objectName: a\n    objectAlias: " + strconv.Quote(alias) + "\n"
		_, err := f.node.NodePublishVolume(t.Context(), req)
		if alias == "" {
			// An empty alias means "use the name": a valid volume.
			if err != nil {
				t.Fatalf("empty alias: %v", err)
			}
			if _, err := f.node.NodeUnpublishVolume(t.Context(), &csi.NodeUnpublishVolumeRequest{VolumeId: req.VolumeId, TargetPath: req.TargetPath}); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("alias %q: %v, want InvalidArgument", alias, err)
		}
	}
	for _, name := range []string{"../x", "a/b", ".."} {
		req := publishRequest(t, f.root)
		req.VolumeContext[contract.AttrObjects] = "array:\n  - |\n    objectName: " + strconv.Quote(name) + "\n"
		if _, err := f.node.NodePublishVolume(t.Context(), req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("name %q: %v, want InvalidArgument", name, err)
		}
	}
	after := snapshotTree(t, f.root)
	// The empty-alias publish created and removed pods/<uid>/volumes/...: only those
	// parent directories may be new.
	for p, v := range after {
		if _, ok := before[p]; !ok && v != "dir" {
			t.Errorf("new entry %s (%s) under the kubelet root", p, v)
		}
	}
}

func TestNodePublishMountFailure(t *testing.T) {
	t.Parallel()
	f := newNodeFixture(t, valuesFetcher(map[string]string{"DatabaseLogin": "a", "DatabasePassword": "b"}))
	req := publishRequest(t, f.root)
	f.mounter.failOn = req.TargetPath
	_, err := f.node.NodePublishVolume(t.Context(), req)
	if st, _ := status.FromError(err); st.Code() != codes.Internal || st.Message() != "mount failed" {
		t.Fatalf("publish with a failing mount: %v", err)
	}
	if _, err := os.Lstat(req.TargetPath); !os.IsNotExist(err) {
		t.Fatalf("the target directory was left behind: %v", err)
	}
}

// TestNodePublishPlantedTargetSymlink: a symlink planted at the target path is refused
// and its destination never mounted or written.
func TestNodePublishPlantedTargetSymlink(t *testing.T) {
	t.Parallel()
	f := newNodeFixture(t, valuesFetcher(map[string]string{"DatabaseLogin": "a", "DatabasePassword": "b"}))
	req := publishRequest(t, f.root)
	outside := t.TempDir()
	if err := os.MkdirAll(filepath.Dir(req.TargetPath), 0o755); err != nil {
		t.Fatal(err)
	}
	mustSymlink(t, outside, req.TargetPath)
	_, err := f.node.NodePublishVolume(t.Context(), req)
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("publish over a planted symlink: %v, want InvalidArgument", err)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 || len(f.mounter.mounted) != 0 {
		t.Fatalf("wrote %v / mounted %v through the planted link", entries, f.mounter.mounted)
	}
	// A symlink higher up (the volume directory) is refused too.
	req2 := publishRequest(t, f.root)
	req2.TargetPath = KubeletTargetPath(f.root, testPodUID, "linked")
	mustSymlink(t, outside, filepath.Dir(req2.TargetPath))
	if _, err := f.node.NodePublishVolume(t.Context(), req2); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("publish below a planted directory symlink: %v, want InvalidArgument", err)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("wrote %v through the planted directory link", entries)
	}
}

func TestNodeUnpublishValidation(t *testing.T) {
	t.Parallel()
	f := newNodeFixture(t, valuesFetcher(nil))
	for _, tc := range []struct {
		name string
		req  *csi.NodeUnpublishVolumeRequest
	}{
		{"no volume id", &csi.NodeUnpublishVolumeRequest{TargetPath: KubeletTargetPath(f.root, "u", "v")}},
		{"no target", &csi.NodeUnpublishVolumeRequest{VolumeId: "v"}},
		{"foreign path", &csi.NodeUnpublishVolumeRequest{VolumeId: "v", TargetPath: "/etc"}},
	} {
		if _, err := f.node.NodeUnpublishVolume(t.Context(), tc.req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", tc.name, err)
		}
	}
}

func TestNodeInfoAndCapabilities(t *testing.T) {
	t.Parallel()
	f := newNodeFixture(t, valuesFetcher(nil))
	info, err := f.node.NodeGetInfo(context.Background(), &csi.NodeGetInfoRequest{})
	if err != nil || info.NodeId != "node-1" || info.MaxVolumesPerNode != 0 {
		t.Fatalf("NodeGetInfo = %v, %v", info, err)
	}
	caps, err := f.node.NodeGetCapabilities(context.Background(), &csi.NodeGetCapabilitiesRequest{})
	if err != nil || len(caps.Capabilities) != 1 || caps.Capabilities[0].GetRpc().GetType() != csi.NodeServiceCapability_RPC_VOLUME_MOUNT_GROUP {
		t.Fatalf("NodeGetCapabilities = %v, %v", caps, err)
	}
}

// fakeClasses serves one parameter set, or err when set.
type fakeClasses struct {
	params map[string]string
	err    error
}

func (c *fakeClasses) Parameters(context.Context, string, string) (map[string]string, error) {
	return c.params, c.err
}

// TestNodeRepublishClassUnavailable: a republish whose SecretProviderClass cannot be
// read keeps the complete old set and reports success; a first publish fails.
func TestNodeRepublishClassUnavailable(t *testing.T) {
	t.Parallel()
	f := newNodeFixture(t, valuesFetcher(map[string]string{"DatabaseLogin": "MyDBLoginName", "DatabasePassword": "MyP@ssword123456"}))
	base := publishRequest(t, f.root)
	classes := &fakeClasses{params: map[string]string{
		contract.AttrKeyVaultName: "az-key-vault-demo", contract.AttrUsePodIdentity: "true", contract.AttrObjects: base.VolumeContext[contract.AttrObjects],
	}}
	f.node.opts.Classes = classes
	req := publishRequest(t, f.root)
	req.VolumeContext = map[string]string{
		contract.AttrSecretProviderClass: "azure-kvname",
		contract.ContextPodName:          "nginx-secrets-store", contract.ContextPodNamespace: "default", contract.ContextPodUID: testPodUID,
	}
	if _, err := f.node.NodePublishVolume(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	classes.err = fmt.Errorf("%w default/azure-kvname: API server answered 503", ErrClass)
	f.advance()
	if _, err := f.node.NodePublishVolume(t.Context(), req); err != nil {
		t.Fatalf("republish with the class unavailable: %v, want success with old files", err)
	}
	if got := listVolume(t, req.TargetPath); got["DATABASE_LOGIN"] != "MyDBLoginName" || len(got) != 2 {
		t.Fatalf("files %v", got)
	}
	if len(f.events.events) != 1 || !strings.Contains(f.events.events[0].message, "API server answered 503") {
		t.Fatalf("events %v", f.events.events)
	}
	other := publishRequest(t, f.root)
	other.TargetPath = KubeletTargetPath(f.root, testPodUID, "second")
	other.VolumeContext = req.VolumeContext
	if _, err := f.node.NodePublishVolume(t.Context(), other); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("first publish with the class unavailable: %v, want FailedPrecondition", err)
	}
}
