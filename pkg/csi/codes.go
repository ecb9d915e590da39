package csi

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"

	"github.com/kvinject/kvinject/pkg/contract"
	"github.com/kvinject/kvinject/pkg/identity"
	"github.com/kvinject/kvinject/pkg/keyvault"
	"github.com/kvinject/kvinject/pkg/policy"
)

// codeOf maps an error to its gRPC status code.
func codeOf(err error) codes.Code {
	var pe *policy.Error
	if errors.As(err, &pe) {
		for _, v := range pe.Violations {
			if v.Field == policy.FieldUnreadable {
				return codes.Unavailable
			}
		}
		return codes.PermissionDenied
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, ErrInvalidVolume), errors.Is(err, ErrUnsafePath), errors.Is(err, contract.ErrInvalidObject),
		errors.Is(err, identity.ErrInvalid), errors.Is(err, identity.ErrNoIdentity), errors.Is(err, identity.ErrNodeIdentity),
		errors.Is(err, identity.ErrMissingToken):
		return codes.InvalidArgument
	case errors.Is(err, ErrClass):
		return codes.FailedPrecondition
	case errors.Is(err, keyvault.ErrTooLarge), errors.Is(err, ErrNoSpace):
		return codes.ResourceExhausted
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
