package keyvault

import (
	"github.com/kvinject/kvinject/pkg/contract"

	"context"
	"errors"
	"sync"
)

// DefaultFileMode is the mode of a file whose object sets no filePermission, as in the
// Azure provider.
const DefaultFileMode = 0o644

// File is one rendered object: the file the volume shows.
type File struct {
	// Name is the file name (Object.FileName), validated by ParseObjects.
	Name string
	// Data is the content. It is secret: never log it.
	Data []byte
	// Mode is the permission bits.
	Mode uint32
	// Object is the object the file was rendered from.
	Object contract.Object
	// Version is the version that was read.
	Version string
}

// FetchOptions configures Fetch.
type FetchOptions struct {
	// Vault is the vault's name, used in error messages.
	Vault string
	// Identity describes the identity used, for error messages.
	Identity string
	// Concurrency bounds the requests in flight; values below 1 mean 1.
	Concurrency int
	// DefaultMode is the mode of objects without filePermission; 0 means DefaultFileMode.
	DefaultMode uint32
}

// Fetch reads every object from src concurrently, at most opts.Concurrency at a time,
// and renders it. With three objects or more the first is read alone, so that Key
// Vault's challenge and the token request happen once rather than once per
// concurrent request. The files come back in the order of objects. When any object fails,
// Fetch returns no files and an error joining one *ObjectError per failed object;
// there is never a partial result. Fetch stops starting new requests once ctx ends.
func Fetch(ctx context.Context, src Source, objects []contract.Object, opts FetchOptions) ([]File, error) {
	n := opts.Concurrency
	if n < 1 {
		n = 1
	}
	def := opts.DefaultMode
	if def == 0 {
		def = DefaultFileMode
	}
	files := make([]File, len(objects))
	errs := make([]error, len(objects))
	one := func(i int, o contract.Object) {
		data, version, err := fetchOne(ctx, src, o)
		if err != nil {
			errs[i] = classify(opts.Vault, o, opts.Identity, err)
			return
		}
		files[i] = File{Name: o.FileName(), Data: data, Mode: o.Mode(def), Object: o, Version: version}
	}
	start := 0
	if n > 1 && len(objects) > 2 {
		// The first request alone: it goes through Key Vault's challenge and gets the
		// token, which the others then reuse instead of each eliciting a challenge.
		one(0, objects[0])
		start = 1
	}
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for i := start; i < len(objects); i++ {
		o := objects[i]
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			errs[i] = classify(opts.Vault, o, opts.Identity, ctx.Err())
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			one(i, o)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return files, nil
}

func fetchOne(ctx context.Context, src Source, o contract.Object) ([]byte, string, error) {
	switch o.ObjectType() {
	case contract.TypeKey:
		k, err := src.GetKey(ctx, o.Name, o.Version)
		if err != nil {
			return nil, "", err
		}
		b, err := RenderKey(o, k)
		return b, k.Version, err
	case contract.TypeCert:
		c, err := src.GetCertificate(ctx, o.Name, o.Version)
		if err != nil {
			return nil, "", err
		}
		b, err := RenderCertificate(o, c)
		return b, c.Version, err
	default:
		s, err := src.GetSecret(ctx, o.Name, o.Version)
		if err != nil {
			return nil, "", err
		}
		b, err := RenderSecret(o, s)
		return b, s.Version, err
	}
}
