package csi

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"github.com/kvinject/kvinject/pkg/contract"
	"github.com/kvinject/kvinject/pkg/identity"
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
	names   []string
	changed bool
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
	parsed, err := ParseParameters(params)
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

// fetch gets and renders every object, all or none.
func (p *publish) fetch(ctx context.Context, params Parameters, id identity.Request) ([]Payload, error) {
	files, err := p.s.opts.Fetcher.Fetch(ctx, params, id)
	payload := make([]Payload, len(files))
	for i, f := range files {
		p.red.add(string(f.Data))
		payload[i] = Payload{Name: f.Name, Data: f.Data, Mode: os.FileMode(f.Mode)}
	}
	return payload, err
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
func (p *publish) write(files []Payload) error {
	changed, err := p.s.opts.Writer.Write(p.target, files, WriteOptions{GID: p.gid})
	p.changed = changed
	return err
}

// published records a successful call.
func (p *publish) published() {
	switch {
	case !p.mounted:
		p.outcome = OutcomePublished
	case p.changed:
		p.outcome = OutcomeRefreshed
	default:
		p.outcome = OutcomeUnchanged
	}
	v := 0
	if p.outcome == OutcomeUnchanged {
		v = 4 // every rotation poll of every volume: only when asked
	}
	p.log.V(v).Info("Published volume", "targetPath", p.target, "outcome", p.outcome, "files", len(p.names), "duration", p.s.opts.Now().Sub(p.start))
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
	msg := p.red.scrub(err.Error())
	p.log.Error(errors.New(msg), "Refresh failed; the volume keeps its previous files", "targetPath", p.target)
	if p.s.opts.Events != nil {
		p.s.opts.Events.Warning(ctx, p.pod, ReasonRefreshFailed, "Key Vault refresh failed; the volume keeps its previous files: "+msg)
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
