package csi

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"
)

// withLogger gives every call's context the plugin's logger.
func withLogger(log klog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		return handler(klog.NewContext(ctx, log), req)
	}
}

// recoverPanics turns a panic in a handler into an Internal error for that call alone,
// and logs it with its stack: one bad request never takes the plugin, and every other
// pod's mounts and rotation, down with it. The request is not logged (it carries
// tokens and secrets).
func recoverPanics(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			klog.FromContext(ctx).Error(fmt.Errorf("panic: %v", r), "CSI call panicked", "method", info.FullMethod, "stack", string(debug.Stack()))
			resp, err = nil, status.Errorf(codes.Internal, "%s: internal error in the node plugin (a panic, logged by the plugin)", info.FullMethod)
		}
	}()
	return handler(ctx, req)
}

// logCalls logs each CSI call's method, code and duration, never its request or
// response (they carry tokens and secrets).
func logCalls(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	klog.FromContext(ctx).V(5).Info("CSI call", "method", info.FullMethod, "code", status.Code(err).String(), "duration", time.Since(start))
	return resp, err
}
