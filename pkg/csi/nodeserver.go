package csi

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"github.com/kvinject/kvinject/pkg/identity"
	"github.com/kvinject/kvinject/pkg/keyvault"
)

// NodeOptions configures a NodeServer. Mounter and Fetcher are required.
type NodeOptions struct {
	// NodeID is returned by NodeGetInfo.
	NodeID string
	// KubeletRoot is the kubelet's root directory (clean, absolute).
	KubeletRoot string
	// TmpfsBytes is the size limit of each volume's tmpfs.
	TmpfsBytes int64
	// PublishTimeout bounds one NodePublishVolume (0 = no bound beyond the caller's).
	PublishTimeout time.Duration
	// Mounter mounts the tmpfs (the mount seam).
	Mounter Mounter
	// Fetcher gets the objects with the pod's identity (the Key Vault and token seam).
	Fetcher ObjectFetcher
	// Classes reads SecretProviderClass objects; nil refuses volumes that name one.
	Classes ClassGetter
	// Events records refresh failures on pods; nil records none.
	Events EventRecorder
	// Metrics receives publish metrics; nil records none.
	Metrics *Metrics
	// Writer writes the files; its zero value stamps data directories with time.Now.
	Writer Writer
	// Now is the clock for durations (nil = time.Now).
	Now func() time.Time
}

// NodeServer is the CSI Node service. It keeps no state in memory that a restart would
// lose: whether a target is published is read from the mount table and the volume's
// "..data" link. Calls for one target path are serialized; different targets proceed
// in parallel.
type NodeServer struct {
	csi.UnimplementedNodeServer
	opts  NodeOptions
	locks keyedMutex
}

// NewNodeServer returns the Node service.
func NewNodeServer(opts NodeOptions) (*NodeServer, error) {
	if opts.Mounter == nil || opts.Fetcher == nil {
		return nil, errors.New("csi: NodeOptions needs a Mounter and a Fetcher")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &NodeServer{opts: opts}, nil
}

// NodeGetInfo returns the node ID; the plugin sets no volume limit and no topology.
func (s *NodeServer) NodeGetInfo(context.Context, *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	return &csi.NodeGetInfoResponse{NodeId: s.opts.NodeID}, nil
}

// NodeGetCapabilities advertises VOLUME_MOUNT_GROUP: files are group-owned by the pod's
// fsGroup given in volume_mount_group.
func (s *NodeServer) NodeGetCapabilities(context.Context, *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	return &csi.NodeGetCapabilitiesResponse{Capabilities: []*csi.NodeServiceCapability{{
		Type: &csi.NodeServiceCapability_Rpc{Rpc: &csi.NodeServiceCapability_RPC{Type: csi.NodeServiceCapability_RPC_VOLUME_MOUNT_GROUP}},
	}}}, nil
}

// NodePublishVolume mounts a tmpfs at the target path and writes the volume's Key Vault
// objects into it, fetched with the pod's own identity. Called again for a published
// target (rotation), it refreshes the files in place, atomically, and writes nothing
// when nothing changed; if the refresh fails while the previous set is complete, it
// keeps that set, records the failure (metric, log, pod event) and succeeds.
// A failed first publish leaves nothing mounted and removes the directory it created.
func (s *NodeServer) NodePublishVolume(ctx context.Context, req *csi.NodePublishVolumeRequest) (_ *csi.NodePublishVolumeResponse, err error) {
	start := s.opts.Now()
	outcome := OutcomeFailed
	defer func() { s.opts.Metrics.observePublish(outcome, s.opts.Now().Sub(start)) }()

	red := requestRedactor(req.GetVolumeContext(), req.GetSecrets())
	fail := func(err error) (*csi.NodePublishVolumeResponse, error) {
		msg := red.scrub(err.Error())
		klog.FromContext(ctx).Error(errors.New(msg), "NodePublishVolume failed", "volumeID", req.GetVolumeId(), "targetPath", req.GetTargetPath())
		return nil, status.Error(codeOf(err), msg)
	}

	if err := validatePublish(req); err != nil {
		return fail(err)
	}
	vc := req.GetVolumeContext()
	pod, err := podInfo(vc)
	if err != nil {
		return fail(err)
	}
	target := req.GetTargetPath()
	if err := checkTargetPath(s.opts.KubeletRoot, pod.UID, target); err != nil {
		return fail(fmt.Errorf("%w: %w", ErrUnsafePath, err))
	}
	gid, err := mountGroup(req.GetVolumeCapability())
	if err != nil {
		return fail(err)
	}
	unlock := s.locks.lock(target)
	defer unlock()
	if s.opts.PublishTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.opts.PublishTimeout)
		defer cancel()
	}
	mounted, err := s.opts.Mounter.IsMountPoint(target)
	if err != nil {
		return fail(fmt.Errorf("check mount point: %w", err))
	}
	log := klog.FromContext(ctx).WithValues("pod", klog.KRef(pod.Namespace, pod.Name), "volumeID", req.GetVolumeId())

	// names is what the request asks for, nil until known; a failed refresh keeps the
	// old files only if they are a complete set of these names.
	var names []string
	keepOld := func(err error) (*csi.NodePublishVolumeResponse, error) {
		if !mounted || !s.opts.Writer.Complete(target, names) {
			return fail(err)
		}
		outcome = OutcomeRefreshFailed
		msg := red.scrub(err.Error())
		log.Error(errors.New(msg), "Refresh failed; the volume keeps its previous files", "targetPath", target)
		if s.opts.Events != nil {
			s.opts.Events.Warning(ctx, pod, ReasonRefreshFailed, "Key Vault refresh failed; the volume keeps its previous files: "+msg)
		}
		return &csi.NodePublishVolumeResponse{}, nil
	}

	params := vc
	if class := vc[keyvault.AttrSecretProviderClass]; class != "" {
		if s.opts.Classes == nil {
			return keepOld(fmt.Errorf("%w %s/%s: the plugin has no API server access; give it a kubeconfig or in-cluster credentials", ErrClass, pod.Namespace, class))
		}
		if params, err = s.opts.Classes.Parameters(ctx, pod.Namespace, class); err != nil {
			return keepOld(err)
		}
	}
	p, err := ParseParameters(params)
	if err != nil {
		return keepOld(err)
	}
	names = make([]string, len(p.Objects))
	for i, o := range p.Objects {
		names[i] = o.FileName()
	}
	id, err := identity.Select(p.Identity, vc, req.GetSecrets())
	if err != nil {
		return keepOld(err)
	}
	red.add(id.Sensitive()...)
	log = log.WithValues("vault", p.Vault, "identity", id.Describe())
	ctx = klog.NewContext(ctx, log)
	log.V(4).Info("Publishing volume", "targetPath", target, "objects", len(p.Objects), "mounted", mounted)

	files, err := s.opts.Fetcher.Fetch(ctx, p, id)
	payload := make([]Payload, len(files))
	for i, f := range files {
		red.add(string(f.Data))
		payload[i] = Payload{Name: f.Name, Data: f.Data, Mode: os.FileMode(f.Mode)}
	}
	if err == nil && !mounted {
		err = s.mount(target)
		if err == nil {
			defer func() {
				if err != nil {
					s.cleanup(ctx, target)
				}
			}()
		}
	}
	var changed bool
	if err == nil {
		changed, err = s.opts.Writer.Write(target, payload, WriteOptions{GID: gid})
	}
	if err != nil {
		return keepOld(err)
	}
	switch {
	case !mounted:
		outcome = OutcomePublished
	case changed:
		outcome = OutcomeRefreshed
	default:
		outcome = OutcomeUnchanged
	}
	v := 0
	if outcome == OutcomeUnchanged {
		v = 4 // every rotation poll of every volume: only when asked
	}
	log.V(v).Info("Published volume", "targetPath", target, "outcome", outcome, "files", len(files), "duration", s.opts.Now().Sub(start))
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

// cleanup undoes a failed first publish: unmount and remove the target.
func (s *NodeServer) cleanup(ctx context.Context, target string) {
	if err := s.unmountAndRemove(target); err != nil {
		klog.FromContext(ctx).Error(err, "Cannot clean up after a failed publish", "targetPath", target)
	}
}

// NodeUnpublishVolume unmounts the target's tmpfs and removes the target directory.
// It is idempotent: an unknown or already removed target succeeds.
func (s *NodeServer) NodeUnpublishVolume(ctx context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume_id is required")
	}
	target := req.GetTargetPath()
	if target == "" {
		return nil, status.Error(codes.InvalidArgument, "target_path is required")
	}
	if err := checkTargetPath(s.opts.KubeletRoot, "", target); err != nil {
		s.opts.Metrics.observeUnpublish(OutcomeFailed)
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	unlock := s.locks.lock(target)
	defer unlock()
	if err := s.unmountAndRemove(target); err != nil {
		s.opts.Metrics.observeUnpublish(OutcomeFailed)
		return nil, status.Error(codes.Internal, err.Error())
	}
	s.opts.Metrics.observeUnpublish("unpublished")
	klog.FromContext(ctx).Info("Unpublished volume", "volumeID", req.GetVolumeId(), "targetPath", target)
	return &csi.NodeUnpublishVolumeResponse{}, nil
}

func (s *NodeServer) unmountAndRemove(target string) error {
	for range 4 {
		mounted, err := s.opts.Mounter.IsMountPoint(target)
		if err != nil {
			return fmt.Errorf("check mount point: %w", err)
		}
		if !mounted {
			if err := os.RemoveAll(target); err != nil {
				return fmt.Errorf("remove target: %w", err)
			}
			return nil
		}
		if err := s.opts.Mounter.Unmount(target); err != nil {
			return err
		}
	}
	return fmt.Errorf("%s is still mounted after repeated unmounts", target)
}

// validatePublish checks the request's required fields.
func validatePublish(req *csi.NodePublishVolumeRequest) error {
	switch {
	case req.GetVolumeId() == "":
		return fmt.Errorf("%w: volume_id is required", ErrInvalidVolume)
	case req.GetTargetPath() == "":
		return fmt.Errorf("%w: target_path is required", ErrInvalidVolume)
	case req.GetVolumeCapability() == nil:
		return fmt.Errorf("%w: volume_capability is required", ErrInvalidVolume)
	case req.GetVolumeCapability().GetMount() == nil:
		return fmt.Errorf("%w: only mount volumes are supported, not block", ErrInvalidVolume)
	case !req.GetReadonly():
		return fmt.Errorf("%w: the volume must be read-only; set readOnly: true on the CSI volume", ErrInvalidVolume)
	}
	return nil
}

// codeOf maps an error to its gRPC status code.
func codeOf(err error) codes.Code {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, ErrInvalidVolume), errors.Is(err, ErrUnsafePath), errors.Is(err, keyvault.ErrInvalidObject),
		errors.Is(err, identity.ErrInvalid), errors.Is(err, identity.ErrNoIdentity), errors.Is(err, identity.ErrNodeIdentity),
		errors.Is(err, identity.ErrMissingToken):
		return codes.InvalidArgument
	case errors.Is(err, ErrClass):
		return codes.FailedPrecondition
	case errors.Is(err, keyvault.ErrNotFound):
		return codes.NotFound
	case errors.Is(err, keyvault.ErrForbidden), errors.Is(err, keyvault.ErrDisabled):
		return codes.PermissionDenied
	case errors.Is(err, keyvault.ErrThrottled), errors.Is(err, keyvault.ErrUnavailable):
		return codes.Unavailable
	case errors.Is(err, keyvault.ErrAuth), errors.Is(err, keyvault.ErrWrongTenant), errors.Is(err, identity.ErrNMI):
		return codes.Unauthenticated
	}
	return codes.Internal
}

// requestRedactor knows every credential of a request: the secrets map's values and
// the kubelet's service-account tokens.
func requestRedactor(vc, secrets map[string]string) *redactor {
	r := &redactor{}
	for k, v := range secrets {
		if k != identity.SecretClientID { // a client ID is not a credential, and messages name it
			r.add(v)
		}
	}
	for _, raw := range []string{secrets[identity.ContextTokens], vc[identity.ContextTokens]} {
		if raw == "" {
			continue
		}
		r.add(raw)
		if toks, err := identity.ParseServiceAccountTokens(raw); err == nil {
			for _, t := range toks {
				r.add(t.Token)
			}
		}
	}
	return r
}

// keyedMutex serializes work per key.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyedEntry
}

type keyedEntry struct {
	mu   sync.Mutex
	refs int
}

func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*keyedEntry{}
	}
	e := k.locks[key]
	if e == nil {
		e = &keyedEntry{}
		k.locks[key] = e
	}
	e.refs++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}
