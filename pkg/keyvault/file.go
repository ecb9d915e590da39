package keyvault

import (
	"github.com/kvinject/kvinject/pkg/contract"
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
