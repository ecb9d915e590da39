package csi

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestRecoverPanics: a handler that panics answers Internal for that call alone, and
// the panic value (which may hold request data) is not sent back.
func TestRecoverPanics(t *testing.T) {
	t.Parallel()
	info := &grpc.UnaryServerInfo{FullMethod: "/csi.v1.Node/NodePublishVolume"}
	resp, err := recoverPanics(t.Context(), "request", info, func(context.Context, any) (any, error) {
		panic("token-looking-value")
	})
	if resp != nil || status.Code(err) != codes.Internal {
		t.Fatalf("resp %v, err %v; want Internal", resp, err)
	}
	if msg := status.Convert(err).Message(); msg != "/csi.v1.Node/NodePublishVolume: internal error in the node plugin (a panic, logged by the plugin)" {
		t.Fatalf("message %q", msg)
	}
	resp, err = recoverPanics(t.Context(), "request", info, func(context.Context, any) (any, error) { return "ok", nil })
	if resp != "ok" || err != nil {
		t.Fatalf("a call that does not panic: %v, %v", resp, err)
	}
}
