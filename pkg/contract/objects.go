package contract

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// ObjectType is the kind of Key Vault object.
type ObjectType string

// Object types, as written in objectType.
const (
	TypeSecret ObjectType = "secret"
	TypeKey    ObjectType = "key"
	TypeCert   ObjectType = "cert"
)

// Formats, as written in objectFormat.
const (
	FormatPEM = "pem"
	FormatPFX = "pfx"
)

// Encodings, as written in objectEncoding.
const (
	EncodingUTF8   = "utf-8"
	EncodingBase64 = "base64"
	EncodingHex    = "hex"
)

// Limits of the object grammar.
const (
	MaxNameLength  = 127
	MaxAliasLength = 255
	VersionLength  = 32
	MinFileMode    = 0o400
	MaxFileMode    = 0o777
)

// ErrInvalidObject is wrapped by every validation error of this package.
var ErrInvalidObject = errors.New("invalid object")

// ErrTooManyObjects is wrapped, with ErrInvalidObject, by the error of an objects
// attribute over its bounds.
var ErrTooManyObjects = errors.New("too many objects")

// Object is one Key Vault object of a volume, in the Azure provider's vocabulary. The
// zero values of the optional fields mean the defaults: type secret, latest version,
// alias = name, format pem, encoding utf-8, the volume's default file mode.
type Object struct {
	Name           string     `json:"objectName"`
	Alias          string     `json:"objectAlias,omitempty"`
	Type           ObjectType `json:"objectType,omitempty"`
	Version        string     `json:"objectVersion,omitempty"`
	VersionHistory string     `json:"objectVersionHistory,omitempty"`
	Format         string     `json:"objectFormat,omitempty"`
	Encoding       string     `json:"objectEncoding,omitempty"`
	FilePermission string     `json:"filePermission,omitempty"`
}

// FileName is the name of the object's file in the volume: the alias, else the name.
func (o Object) FileName() string {
	if o.Alias != "" {
		return o.Alias
	}
	return o.Name
}

// ObjectType returns the object's type, secret when unset.
func (o Object) ObjectType() ObjectType {
	if o.Type == "" {
		return TypeSecret
	}
	return o.Type
}

// Mode returns the file mode of the object's file, or def when FilePermission is unset.
// Call Validate first: an invalid permission returns def.
func (o Object) Mode(def uint32) uint32 {
	if o.FilePermission == "" {
		return def
	}
	m, err := ParseMode(o.FilePermission)
	if err != nil {
		return def
	}
	return m
}

// Validate checks every field of o against the grammar. The error names the field and
// the rule, wraps ErrInvalidObject, and never echoes more than the offending value.
func (o Object) Validate() error {
	if err := ValidateName(o.Name); err != nil {
		return fieldErr("objectName", err)
	}
	switch o.Type {
	case "", TypeSecret, TypeKey, TypeCert:
	default:
		return fieldErr("objectType", fmt.Errorf("%q is not a type: use secret, key or cert", string(o.Type)))
	}
	if o.Version != "" {
		if err := ValidateVersion(o.Version); err != nil {
			return fieldErr("objectVersion", err)
		}
	}
	switch o.VersionHistory {
	case "", "0", "1":
	default:
		return fieldErr("objectVersionHistory", fmt.Errorf("%q is not supported: kvinject mounts one version per object", o.VersionHistory))
	}
	if o.Alias != "" {
		if err := ValidateAlias(o.Alias); err != nil {
			return fieldErr("objectAlias", err)
		}
	}
	switch o.Format {
	case "", FormatPEM, FormatPFX:
	default:
		return fieldErr("objectFormat", fmt.Errorf("%q is not a format: use pem or pfx", o.Format))
	}
	switch o.Encoding {
	case "", EncodingUTF8, EncodingBase64, EncodingHex:
	default:
		return fieldErr("objectEncoding", fmt.Errorf("%q is not an encoding: use utf-8, base64 or hex", o.Encoding))
	}
	if o.FilePermission != "" {
		if _, err := ParseMode(o.FilePermission); err != nil {
			return fieldErr("filePermission", err)
		}
	}
	if o.Format == FormatPFX && o.ObjectType() != TypeSecret {
		return fieldErr("objectFormat", fmt.Errorf("pfx needs the private key, which only the certificate's secret holds: use type secret for %q", o.Name))
	}
	if o.Encoding != "" && o.Encoding != EncodingUTF8 {
		if o.ObjectType() != TypeSecret {
			return fieldErr("objectEncoding", fmt.Errorf("%s applies to secrets only, not to a %s", o.Encoding, o.ObjectType()))
		}
		if o.Format == FormatPFX {
			return fieldErr("objectEncoding", fmt.Errorf("%s cannot be combined with format pfx, which is always written as binary", o.Encoding))
		}
	}
	return nil
}

// FieldError is a validation error of one field of an Object. It matches
// ErrInvalidObject with errors.Is.
type FieldError struct {
	// Field is the attribute's name (objectName, objectAlias, ...).
	Field string
	// Err is the rule that was broken.
	Err error
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%v: %s: %v", ErrInvalidObject, e.Field, e.Err)
}

// Unwrap returns the broken rule.
func (e *FieldError) Unwrap() error { return e.Err }

// Is reports whether target is ErrInvalidObject.
func (e *FieldError) Is(target error) bool { return target == ErrInvalidObject }

func fieldErr(field string, err error) error {
	return &FieldError{Field: field, Err: err}
}

// ValidateName checks a Key Vault object name: 1-127 characters of [0-9A-Za-z-].
func ValidateName(name string) error {
	if name == "" {
		return errors.New("the name is empty")
	}
	if len(name) > MaxNameLength {
		return fmt.Errorf("the name is %d characters long; Key Vault allows at most %d", len(name), MaxNameLength)
	}
	for i := 0; i < len(name); i++ {
		if !isAlnum(name[i]) && name[i] != '-' {
			return fmt.Errorf("the name %q has %q; Key Vault names use only letters, digits and '-'", name, name[i])
		}
	}
	return nil
}

// ValidateVersion checks an object version: 32 hexadecimal digits.
func ValidateVersion(v string) error {
	if len(v) != VersionLength {
		return fmt.Errorf("the version %q is not %d hexadecimal digits", v, VersionLength)
	}
	for i := 0; i < len(v); i++ {
		if !isHex(v[i]) {
			return fmt.Errorf("the version %q is not %d hexadecimal digits", v, VersionLength)
		}
	}
	return nil
}

// ValidateAlias checks a file name: [A-Za-z0-9_][A-Za-z0-9._-]*, at most 255 bytes. It
// can hold no path separator and never starts with '.', so it can neither leave the
// volume nor collide with the writer's reserved "..data" names.
func ValidateAlias(alias string) error {
	if alias == "" {
		return errors.New("the file name is empty")
	}
	if len(alias) > MaxAliasLength {
		return fmt.Errorf("the file name is %d characters long; at most %d are allowed", len(alias), MaxAliasLength)
	}
	switch {
	case strings.ContainsAny(alias, `/\`):
		return fmt.Errorf("the file name %q contains a path separator; use a plain file name", alias)
	case alias[0] == '.':
		return fmt.Errorf("the file name %q starts with '.'; names starting with '.' are reserved", alias)
	case !isAlnum(alias[0]) && alias[0] != '_':
		return fmt.Errorf("the file name %q must start with a letter, a digit or '_'", alias)
	}
	for i := 1; i < len(alias); i++ {
		c := alias[i]
		if !isAlnum(c) && c != '.' && c != '_' && c != '-' {
			return fmt.Errorf("the file name %q has %q; use letters, digits, '.', '_' and '-'", alias, c)
		}
	}
	return nil
}

// ParseMode parses an octal file mode between 0400 and 0777 ("0440", "440", "0o440").
func ParseMode(s string) (uint32, error) {
	t := strings.TrimPrefix(strings.TrimPrefix(s, "0o"), "0O")
	if t == "" || len(t) > 4 {
		return 0, fmt.Errorf("the mode %q is not an octal number between 0400 and 0777", s)
	}
	m, err := strconv.ParseUint(t, 8, 32)
	if err != nil || m < MinFileMode || m > MaxFileMode {
		return 0, fmt.Errorf("the mode %q is not an octal number between 0400 and 0777", s)
	}
	return uint32(m), nil
}

// objectArray is the outer document of the objects attribute.
type objectArray struct {
	Array []string `json:"array"`
}

// MarshalObjects renders objects as the "objects" attribute: a YAML "array:" whose items
// are YAML documents, as the Azure provider's SecretProviderClass writes them. The
// output is that of sigs.k8s.io/yaml (keys sorted, scalars quoted only where YAML would
// read them as something else). It is safe for concurrent use.
func MarshalObjects(objects []Object) (string, error) {
	if s, ok := marshalObjectsFast(objects); ok {
		return s, nil
	}
	return marshalObjectsYAML(objects)
}

// marshalObjectsYAML is MarshalObjects through the YAML library: the reference, used
// for whatever marshalObjectsFast declines.
func marshalObjectsYAML(objects []Object) (string, error) {
	arr := objectArray{Array: make([]string, 0, len(objects))}
	for _, o := range objects {
		b, err := yaml.Marshal(o)
		if err != nil {
			return "", fmt.Errorf("marshal object %q: %w", o.Name, err)
		}
		arr.Array = append(arr.Array, string(b))
	}
	b, err := yaml.Marshal(arr)
	if err != nil {
		return "", fmt.Errorf("marshal objects: %w", err)
	}
	return string(b), nil
}

// marshalObjectsFast writes what marshalObjectsYAML writes for the common case, without
// the JSON and YAML round trips that cost ~30 us per object: every value is a plain
// YAML scalar (see plainScalar) or a 3-4 digit octal file permission (always
// double-quoted, as YAML 1.1 reads it as an integer). It declines (ok false) anything
// else, including an empty list, so the library decides every rarer case.
func marshalObjectsFast(objects []Object) (string, bool) {
	if len(objects) == 0 {
		return "", false
	}
	// The items are literal blocks ("- |"), each line indented by two spaces. Fields
	// are in the order YAML sorts their keys; empty ones are omitted, as in JSON.
	b := make([]byte, 0, 8+len(objects)*96)
	b = append(b, "array:\n"...)
	for i := range objects {
		o := &objects[i]
		if o.Name == "" {
			return "", false
		}
		b = append(b, "- |\n"...)
		if o.FilePermission != "" {
			if !octalMode(o.FilePermission) {
				return "", false
			}
			b = append(b, `  filePermission: "`...)
			b = append(b, o.FilePermission...)
			b = append(b, "\"\n"...)
		}
		for _, f := range [...]struct{ key, value string }{
			{"objectAlias", o.Alias},
			{"objectEncoding", o.Encoding},
			{"objectFormat", o.Format},
			{"objectName", o.Name},
			{"objectType", string(o.Type)},
			{"objectVersion", o.Version},
			{"objectVersionHistory", o.VersionHistory},
		} {
			if f.value == "" {
				continue
			}
			if !plainScalar(f.value) {
				return "", false
			}
			b = append(b, "  "...)
			b = append(b, f.key...)
			b = append(b, ": "...)
			b = append(b, f.value...)
			b = append(b, '\n')
		}
	}
	return string(b), true
}

// plainScalar reports whether YAML 1.1 (go-yaml v2, behind sigs.k8s.io/yaml) reads s
// unquoted as the same string, so it is written plain. It is deliberately narrow: s is
// made of [A-Za-z0-9._-] and either starts with a letter or '_' and is not one of the
// words YAML reads as a boolean or null, or is all hexadecimal digits with at least
// one of a, c, d, f (which no integer, float or timestamp syntax accepts) — an object
// version. Everything else is left to the library.
func plainScalar(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '.' && c != '_' && c != '-' {
			return false
		}
	}
	if c := s[0]; c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' {
		switch s {
		case "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO",
			"true", "True", "TRUE", "false", "False", "FALSE",
			"on", "On", "ON", "off", "Off", "OFF", "null", "Null", "NULL":
			return false
		}
		return true
	}
	hasLetter := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isHex(c) {
			return false
		}
		switch c {
		case 'a', 'c', 'd', 'f', 'A', 'C', 'D', 'F':
			hasLetter = true
		}
	}
	return hasLetter
}

// octalMode reports whether s is 3 or 4 octal digits, which YAML reads as an integer
// and the library therefore writes double-quoted.
func octalMode(s string) bool {
	if len(s) != 3 && len(s) != 4 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '7' {
			return false
		}
	}
	return true
}

// MaxObjectBytes bounds the YAML of one object in the objects attribute: every field at
// its longest takes about 600 bytes.
const MaxObjectBytes = 1024

// MaxObjectsBytes is the longest objects attribute with maxObjects objects: anything
// longer is refused before it is parsed.
func MaxObjectsBytes(maxObjects int) int { return 64 + maxObjects*MaxObjectBytes }

// SameObject reports whether two objects read the same thing from Key Vault and render
// it the same way (type, name, version, format, encoding): a second alias of one
// object is a second read for nothing, and a way to multiply a volume's size.
func SameObject(a, b Object) bool {
	return a.ObjectType() == b.ObjectType() && strings.EqualFold(a.Name, b.Name) && strings.EqualFold(a.Version, b.Version) &&
		orDefault(a.Format, FormatPEM) == orDefault(b.Format, FormatPEM) && orDefault(a.Encoding, EncodingUTF8) == orDefault(b.Encoding, EncodingUTF8)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// ParseObjects parses and validates the "objects" attribute, which a pod author may
// have written by hand: it is bounded before it is parsed (MaxObjectsBytes, then at
// most maxObjects objects), every object is validated, two objects may not share a file
// name, and no object may be listed twice (SameObject). Unknown fields are errors, so
// a typo is reported instead of silently ignored.
func ParseObjects(s string, maxObjects int) ([]Object, error) {
	if limit := MaxObjectsBytes(maxObjects); len(s) > limit {
		return nil, fmt.Errorf("%w: %w: objects is %d bytes long; at most %d are allowed for %d objects", ErrInvalidObject, ErrTooManyObjects, len(s), limit, maxObjects)
	}
	var arr objectArray
	if err := yaml.UnmarshalStrict([]byte(s), &arr); err != nil {
		return nil, fmt.Errorf("%w: objects is not a YAML \"array:\" of objects: %w", ErrInvalidObject, err)
	}
	if len(arr.Array) == 0 {
		return nil, fmt.Errorf("%w: objects lists no object", ErrInvalidObject)
	}
	if len(arr.Array) > maxObjects {
		return nil, fmt.Errorf("%w: %w: objects lists %d objects; at most %d are allowed", ErrInvalidObject, ErrTooManyObjects, len(arr.Array), maxObjects)
	}
	objects := make([]Object, 0, len(arr.Array))
	seen := make(map[string]int, len(arr.Array))
	for i, item := range arr.Array {
		var o Object
		if err := yaml.UnmarshalStrict([]byte(item), &o); err != nil {
			return nil, fmt.Errorf("%w: objects[%d]: %w", ErrInvalidObject, i, err)
		}
		if err := o.Validate(); err != nil {
			return nil, fmt.Errorf("objects[%d]: %w", i, err)
		}
		if j, dup := seen[o.FileName()]; dup {
			return nil, fmt.Errorf("%w: objects[%d] and objects[%d] both write the file %q; give one an objectAlias", ErrInvalidObject, j, i, o.FileName())
		}
		for j, prev := range objects {
			if SameObject(prev, o) {
				return nil, fmt.Errorf("%w: objects[%d] and objects[%d] both read %s %q (same version, format and encoding); list it once", ErrInvalidObject, j, i, o.ObjectType(), o.Name)
			}
		}
		seen[o.FileName()] = i
		objects = append(objects, o)
	}
	return objects, nil
}
