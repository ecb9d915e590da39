package csi

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"github.com/kvinject/kvinject/pkg/contract"
)

// NodeOptions configures a NodeServer. Mounter and Fetcher are required.
type NodeOptions struct {
	// NodeID is returned by NodeGetInfo.
	NodeID string
	// DriverName is the driver's name: the volumes it recovers after a restart are
	// those the kubelet records for it.
	DriverName string
	// KubeletRoot is the kubelet's root directory (clean, absolute).
	KubeletRoot string
	// TmpfsBytes is the size limit of each volume's tmpfs.
	TmpfsBytes int64
	// PublishTimeout bounds one NodePublishVolume (0 = no bound beyond the caller's).
	PublishTimeout time.Duration
	// TokenAudience is the audience of the service-account token used for workload
	// identity ("" = contract.DefaultTokenAudience).
	TokenAudience string
	// MaxObjects bounds the objects of a volume (0 = contract.DefaultMaxObjects).
	MaxObjects int
	// RotationPollInterval is how often a republished volume asks Key Vault (0 =
	// DefaultRotationPollInterval); republishes in between read nothing.
	RotationPollInterval time.Duration
	// Mounter mounts the tmpfs (the mount seam).
	Mounter Mounter
	// Fetcher gets the objects with the pod's identity (the Key Vault and token seam).
	Fetcher ObjectFetcher
	// Classes reads SecretProviderClass objects; nil refuses volumes that name one.
	Classes ClassGetter
	// Events records refresh failures on pods; nil records none.
	Events EventRecorder
	// Policies checks every volume against the KeyVaultAccessPolicies before any token
	// or Key Vault request; nil checks nothing (a plugin without an API server).
	Policies PolicyChecker
	// Metrics receives publish metrics; nil records none.
	Metrics *Metrics
	// Writer writes the files; its zero value stamps data directories with time.Now.
	Writer Writer
	// Now is the clock for durations (nil = time.Now).
	Now func() time.Time
}

// NodeServer is the CSI Node service. Whether a target is published is read from the
// mount table and the volume's "..data" link; the only state in memory is when each
// volume's next refresh is due, which a restart loses at the cost of one refresh per
// volume. Calls for one target path are serialized; different targets proceed in
// parallel.
type NodeServer struct {
	csi.UnimplementedNodeServer
	opts     NodeOptions
	locks    keyedMutex
	schedule *schedule
}

// NewNodeServer returns the Node service.
func NewNodeServer(opts NodeOptions) (*NodeServer, error) {
	if opts.Mounter == nil || opts.Fetcher == nil {
		return nil, errors.New("csi: NodeOptions needs a Mounter and a Fetcher")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxObjects <= 0 {
		opts.MaxObjects = contract.DefaultMaxObjects
	}
	if opts.RotationPollInterval <= 0 {
		opts.RotationPollInterval = DefaultRotationPollInterval
	}
	s := &NodeServer{opts: opts, schedule: newSchedule(opts.RotationPollInterval, opts.Now)}
	opts.Metrics.watchRefreshes(s.schedule.failing)
	return s, nil
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
// The steps are publish's methods, in this order.
func (s *NodeServer) NodePublishVolume(ctx context.Context, req *csi.NodePublishVolumeRequest) (_ *csi.NodePublishVolumeResponse, err error) {
	p := s.newPublish(ctx, req)
	defer p.observe()
	if err := p.checkRequest(); err != nil {
		return p.fail(ctx, err)
	}
	unlock := s.locks.lock(p.target)
	defer unlock()
	if s.opts.PublishTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.opts.PublishTimeout)
		defer cancel()
	}
	if err := p.checkMounted(); err != nil {
		return p.fail(ctx, err)
	}
	params, err := p.parameters(ctx)
	if err != nil {
		return p.keepOld(ctx, err)
	}
	id, err := p.identity(params)
	if err != nil {
		return p.keepOld(ctx, err)
	}
	if err := p.checkPolicy(ctx, params, id); err != nil {
		return p.keepOld(ctx, err)
	}
	if p.notDue(params, id) {
		return p.skipped()
	}
	ctx = klog.NewContext(ctx, p.log)
	files, err := p.fetch(ctx, params, id)
	if err != nil {
		return p.keepOld(ctx, err)
	}
	defer files.Release()
	if err := p.ensureMounted(); err != nil {
		return p.keepOld(ctx, err)
	}
	defer func() {
		if err != nil {
			p.undoMount(ctx)
		}
	}()
	if err := p.write(files); err != nil {
		return p.keepOld(ctx, err)
	}
	p.published(ctx, files)
	return &csi.NodePublishVolumeResponse{}, nil
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
	s.schedule.forget(target)
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
