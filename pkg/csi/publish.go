package csi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"github.com/kvinject/kvinject/pkg/contract"
	"github.com/kvinject/kvinject/pkg/identity"
	"github.com/kvinject/kvinject/pkg/keyvault"
)

// publish is one NodePublishVolume call. Its methods are the call's steps, in the order
// NodePublishVolume runs them; each step fills in what the next needs.
type publish struct {
	s     *NodeServer
	req   *csi.NodePublishVolumeRequest
	start time.Time
	log   klog.Logger
	// red scrubs every credential and content the call learns from what it returns or logs.
	red *redactor
	// outcome is the metric label, OutcomeFailed until a step says otherwise.
	outcome string

	pod    PodInfo
	target string
	gid    int
	// mounted: the target already holds our tmpfs (a republish).
	mounted bool
	// mountedNow: this call mounted it, and undoes that if it fails.
	mountedNow bool
	// names are the file names the request asks for, nil until known: a failed
	// refresh keeps the old files only if they are a complete set of these.
	names []string
	// key identifies the volume's parameters and identity for the schedule; fresh
	// says every object is read from Key Vault now (a first publish, or changed
	// parameters) rather than from what the node read within the interval.
	key   string
	fresh bool
	// changed are the names the write changed.
	changed []string
}

func (s *NodeServer) newPublish(ctx context.Context, req *csi.NodePublishVolumeRequest) *publish {
	return &publish{
		s: s, req: req, start: s.opts.Now(), outcome: OutcomeFailed,
		log: klog.FromContext(ctx).WithValues("volumeID", req.GetVolumeId()),
		red: requestRedactor(req.GetVolumeContext(), req.GetSecrets()),
	}
}

// observe records the call's outcome and duration.
func (p *publish) observe() {
	p.s.opts.Metrics.observePublish(p.outcome, p.s.opts.Now().Sub(p.start))
}

// checkRequest checks the request's fields, the pod it is for, that the target path is
// the kubelet's path for that pod, and the mount group.
func (p *publish) checkRequest() error {
	if err := validatePublish(p.req); err != nil {
		return err
	}
	pod, err := podInfo(p.req.GetVolumeContext())
	if err != nil {
		return err
	}
	p.pod, p.target = pod, p.req.GetTargetPath()
	p.log = p.log.WithValues("pod", klog.KRef(pod.Namespace, pod.Name))
	if err := checkTargetPath(p.s.opts.KubeletRoot, pod.UID, p.target); err != nil {
		return fmt.Errorf("%w: %w", ErrUnsafePath, err)
	}
	p.gid, err = mountGroup(p.req.GetVolumeCapability())
	return err
}

// checkMounted finds out whether this is a first publish or a republish.
func (p *publish) checkMounted() error {
	mounted, err := p.s.opts.Mounter.IsMountPoint(p.target)
	if err != nil {
		return fmt.Errorf("check mount point: %w", err)
	}
	p.mounted = mounted
	return nil
}

// parameters reads the volume's Key Vault parameters: the inline volume's attributes,
// or the SecretProviderClass they name, parsed and validated.
func (p *publish) parameters(ctx context.Context) (Parameters, error) {
	params := p.req.GetVolumeContext()
	if class := params[contract.AttrSecretProviderClass]; class != "" {
		if p.s.opts.Classes == nil {
			return Parameters{}, fmt.Errorf("%w %s/%s: the plugin has no API server access; give it a kubeconfig or in-cluster credentials", ErrClass, p.pod.Namespace, class)
		}
		var err error
		if params, err = p.s.opts.Classes.Parameters(ctx, p.pod.Namespace, class); err != nil {
			return Parameters{}, err
		}
	}
	parsed, err := ParseParameters(params, p.s.opts.MaxObjects)
	if class := p.req.GetVolumeContext()[contract.AttrSecretProviderClass]; err != nil && class != "" {
		return Parameters{}, fmt.Errorf("%w (spec.parameters of SecretProviderClass %s/%s)", err, p.pod.Namespace, class)
	}
	if err != nil {
		return Parameters{}, err
	}
	p.names = make([]string, len(parsed.Objects))
	for i, o := range parsed.Objects {
		p.names[i] = o.FileName()
	}
	return parsed, nil
}

// identity selects the pod's own identity for the volume.
func (p *publish) identity(params Parameters) (identity.Request, error) {
	id, err := identity.Select(params.Identity, p.req.GetVolumeContext(), p.req.GetSecrets(), p.s.opts.TokenAudience)
	if err != nil {
		return identity.Request{}, err
	}
	p.red.add(id.Sensitive()...)
	p.log = p.log.WithValues("vault", params.Vault, "identity", id.Describe())
	p.log.V(4).Info("Publishing volume", "targetPath", p.target, "objects", len(params.Objects), "mounted", p.mounted)
	return id, nil
}

// checkPolicy asks the namespace's KeyVaultAccessPolicies about the volume's vault,
// tenant and identity: a refusal fails the call (a republish keeps its files and stops
// refreshing); what only Audit policies would refuse is logged, counted and recorded
// on the pod.
func (p *publish) checkPolicy(ctx context.Context, params Parameters, id identity.Request) error {
	if p.s.opts.Policies == nil {
		return nil
	}
	req, podIdentity := policyRequest(params, id)
	res := p.s.opts.Policies.Check(ctx, p.pod, req, podIdentity)
	if res.Denied != nil {
		p.s.opts.Metrics.observePolicy(ActionDenied, res.Denied)
		return res.Denied
	}
	if res.Audited != nil {
		p.s.opts.Metrics.observePolicy(ActionAudited, res.Audited)
		p.log.Info("KeyVaultAccessPolicy audit", "report", res.Audited.Error())
		if p.s.opts.Events != nil {
			p.s.opts.Events.Event(ctx, p.pod, EventWarning, ReasonPolicyAudit, res.Audited.Error())
		}
	}
	return nil
}

// notDue reports whether a republish can skip Key Vault: the volume is mounted with a
// complete set of the files the same parameters and identity asked for, and its
// refresh is not due yet.
func (p *publish) notDue(params Parameters, id identity.Request) bool {
	p.key = scheduleKey(params, id)
	due, changed := p.s.schedule.due(p.target, p.key)
	p.fresh = !p.mounted || changed
	return p.mounted && !due && p.s.opts.Writer.Complete(p.target, p.names)
}

// skipped answers a republish that was not due.
func (p *publish) skipped() (*csi.NodePublishVolumeResponse, error) {
	p.outcome = OutcomeNotDue
	p.log.V(5).Info("Refresh not due", "targetPath", p.target)
	return &csi.NodePublishVolumeResponse{}, nil
}

// scheduleKey identifies what a volume's files were fetched for: its parameters and
// its identity's key (which holds no credential, and stays the same when the kubelet
// refreshes the service-account token).
func scheduleKey(params Parameters, id identity.Request) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s|%s|%s|", params.Vault, params.Cloud.Name, id.Key(params.Cloud.Configuration.ActiveDirectoryAuthorityHost))
	for _, o := range params.Objects {
		fmt.Fprintf(h, "%q,%q,%q,%q,%q,%q,%q;", o.Name, o.Alias, o.ObjectType(), o.Version, o.Format, o.Encoding, o.FilePermission)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// volumeBudget is what a volume's files may take: half of its tmpfs, so that a rotation
// can write the new set next to the old, less room for the directories and links.
func volumeBudget(tmpfsBytes int64) int64 { return tmpfsBytes/2 - 64<<10 }

// fetch gets and renders every object, all or none, within the volume's budget.
func (p *publish) fetch(ctx context.Context, params Parameters, id identity.Request) (*keyvault.Fetched, error) {
	budget := volumeBudget(p.s.opts.TmpfsBytes)
	files, err := p.s.opts.Fetcher.Fetch(ctx, params, id, FetchOptions{Fresh: p.fresh, MaxBytes: budget})
	if errors.Is(err, keyvault.ErrTooLarge) {
		return nil, fmt.Errorf("%w; a volume holds at most %d bytes of files: half of its tmpfs (--tmpfs-size, %d bytes), so that a rotation can write the new files next to the old. Raise --tmpfs-size (the chart's csi.tmpfsSize) or mount fewer objects",
			err, budget, p.s.opts.TmpfsBytes)
	}
	return files, err
}

// ensureMounted mounts the tmpfs at the target on a first publish.
func (p *publish) ensureMounted() error {
	if p.mounted {
		return nil
	}
	if err := p.s.mount(p.target); err != nil {
		return err
	}
	p.mountedNow = true
	return nil
}

// undoMount removes what a failed first publish mounted and created.
func (p *publish) undoMount(ctx context.Context) {
	if !p.mountedNow {
		return
	}
	if err := p.s.unmountAndRemove(p.target); err != nil {
		klog.FromContext(ctx).Error(err, "Cannot clean up after a failed publish", "targetPath", p.target)
	}
}

// write swaps the files in atomically (nothing is written when nothing changed).
func (p *publish) write(files *keyvault.Fetched) error {
	payload := make([]Payload, len(files.Files))
	for i, f := range files.Files {
		payload[i] = Payload{Name: f.Name, Data: f.Data, Mode: os.FileMode(f.Mode)}
	}
	res, err := p.s.opts.Writer.Write(p.target, payload, WriteOptions{GID: p.gid})
	p.changed = res.Changed
	return err
}

// published records a successful call, schedules the volume's next refresh, and tells
// the pod which objects a rotation changed (names and versions, never values).
func (p *publish) published(ctx context.Context, files *keyvault.Fetched) {
	versions := make(map[string]string, len(files.Files))
	for _, f := range files.Files {
		versions[f.Name] = f.Version
	}
	p.s.schedule.refreshed(p.target, p.key, versions)
	switch {
	case !p.mounted:
		p.outcome = OutcomePublished
	case len(p.changed) > 0:
		p.outcome = OutcomeRefreshed
		if p.s.opts.Events != nil {
			p.s.opts.Events.Event(ctx, p.pod, EventNormal, ReasonRefreshed, refreshedMessage(files.Files, p.changed))
		}
	default:
		p.outcome = OutcomeUnchanged
	}
	v := 0
	if p.outcome == OutcomeUnchanged {
		v = 4 // every rotation poll of every volume: only when asked
	}
	p.log.V(v).Info("Published volume", "targetPath", p.target, "outcome", p.outcome, "files", len(p.names), "changed", p.changed, "duration", p.s.opts.Now().Sub(p.start))
}

// refreshedMessage names the changed files' objects and versions.
func refreshedMessage(files []keyvault.File, changed []string) string {
	byName := make(map[string]keyvault.File, len(files))
	for _, f := range files {
		byName[f.Name] = f
	}
	var parts []string
	for _, name := range changed {
		f, ok := byName[name]
		if !ok {
			parts = append(parts, name+" (removed)")
			continue
		}
		v := f.Version
		if v == "" {
			v = "latest"
		}
		parts = append(parts, fmt.Sprintf("%s (%s %q, version %s)", name, f.Object.ObjectType(), f.Object.Name, v))
	}
	return "Key Vault objects refreshed: " + strings.Join(parts, ", ")
}

// fail answers the call with err's status code and its scrubbed message.
func (p *publish) fail(ctx context.Context, err error) (*csi.NodePublishVolumeResponse, error) {
	msg := p.red.scrub(err.Error())
	klog.FromContext(ctx).Error(errors.New(msg), "NodePublishVolume failed", "volumeID", p.req.GetVolumeId(), "targetPath", p.req.GetTargetPath())
	return nil, status.Error(codeOf(err), msg)
}

// keepOld handles a failure after the request was found valid: a republish whose
// target holds a complete set of the requested files keeps it and succeeds (the
// failure is logged, counted and recorded as a pod event); anything else fails.
func (p *publish) keepOld(ctx context.Context, err error) (*csi.NodePublishVolumeResponse, error) {
	if !p.mounted || !p.s.opts.Writer.Complete(p.target, p.names) {
		return p.fail(ctx, err)
	}
	p.outcome = OutcomeRefreshFailed
	p.s.schedule.failed(p.target)
	msg := p.red.scrub(err.Error())
	p.log.Error(errors.New(msg), "Refresh failed; the volume keeps its previous files", "targetPath", p.target)
	if p.s.opts.Events != nil {
		p.s.opts.Events.Event(ctx, p.pod, EventWarning, ReasonRefreshFailed, "Key Vault refresh failed; the volume keeps its previous files: "+msg)
	}
	return &csi.NodePublishVolumeResponse{}, nil
}

// mount creates the target directory if needed (refusing a symlink planted there) and
// mounts the tmpfs on it.
func (s *NodeServer) mount(target string) error {
	fi, err := os.Lstat(target)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(filepath.Dir(target), 0o750); err != nil {
			return fmt.Errorf("create target parent: %w", err)
		}
		if err := os.Mkdir(target, 0o750); err != nil {
			return fmt.Errorf("create target: %w", err)
		}
	case err != nil:
		return fmt.Errorf("target: %w", err)
	case fi.Mode()&os.ModeSymlink != 0 || !fi.IsDir():
		return fmt.Errorf("%w: the target path is a symlink or not a directory", ErrUnsafePath)
	}
	if err := s.opts.Mounter.MountTmpfs(target, s.opts.TmpfsBytes); err != nil {
		if fi == nil { // created above: leave nothing behind
			_ = os.Remove(target)
		}
		return err
	}
	return nil
}
