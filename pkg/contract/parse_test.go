package contract

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

// TestParseObjectsRules: every rule of a hand-written objects attribute, each with the
// exact error a pod author reads in the FailedMount event.
func TestParseObjectsRules(t *testing.T) {
	one := func(item string) string {
		return "array:\n  - |\n    " + strings.ReplaceAll(item, "\n", "\n    ") + "\n"
	}
	two := func(a, b string) string {
		return "array:\n  - |\n    " + strings.ReplaceAll(a, "\n", "\n    ") + "\n  - |\n    " + strings.ReplaceAll(b, "\n", "\n    ") + "\n"
	}
	many := func(n int) string {
		var b strings.Builder
		b.WriteString("array:\n")
		for i := range n {
			b.WriteString("  - |\n    objectName: s" + strings.Repeat("x", i%3) + string(rune('a'+i%26)) + "\n    objectAlias: f" + strconv.Itoa(i) + "\n")
		}
		return b.String()
	}
	tests := []struct {
		name, objects string
		max           int
		want          int // objects parsed, when wantErr is empty
		wantErr       string
		tooMany       bool
	}{
		{name: "one secret", objects: one("objectName: db\nobjectType: secret"), max: 4, want: 1},
		{name: "two aliases of different objects", objects: two("objectName: a\nobjectAlias: x", "objectName: b\nobjectAlias: y"), max: 4, want: 2},
		{name: "same secret in two encodings", objects: two("objectName: a\nobjectAlias: x", "objectName: a\nobjectAlias: y\nobjectEncoding: base64"), max: 4, want: 2},
		{name: "same secret, two versions", objects: two("objectName: a\nobjectAlias: x", "objectName: a\nobjectAlias: y\nobjectVersion: 0123456789abcdef0123456789abcdef"), max: 4, want: 2},
		{name: "same object twice under two aliases", objects: two("objectName: db\nobjectAlias: x", "objectName: DB\nobjectAlias: y\nobjectType: secret"), max: 4,
			wantErr: `invalid object: objects[0] and objects[1] both read secret "DB" (same version, format and encoding); list it once`},
		{name: "explicit default format is the same object", objects: two("objectName: c\nobjectType: cert\nobjectAlias: x", "objectName: c\nobjectType: cert\nobjectAlias: y\nobjectFormat: pem"), max: 4,
			wantErr: `invalid object: objects[0] and objects[1] both read cert "c" (same version, format and encoding); list it once`},
		{name: "two objects, one file", objects: two("objectName: a\nobjectAlias: f", "objectName: b\nobjectAlias: f"), max: 4,
			wantErr: `invalid object: objects[0] and objects[1] both write the file "f"; give one an objectAlias`},
		{name: "more objects than allowed", objects: many(5), max: 4, tooMany: true,
			wantErr: `invalid object: too many objects: objects lists 5 objects; at most 4 are allowed`},
		{name: "longer than the objects allowed could be", objects: many(5) + "#" + strings.Repeat("x", MaxObjectsBytes(4)), max: 4, tooMany: true,
			wantErr: "invalid object: too many objects: objects is " + strconv.Itoa(len(many(5))+1+MaxObjectsBytes(4)) + " bytes long; at most " + strconv.Itoa(MaxObjectsBytes(4)) + " are allowed for 4 objects"},
		{name: "unknown field", objects: one("objectName: a\nobjectVersionHistroy: 2"), max: 4,
			wantErr: `invalid object: objects[0]: error unmarshaling JSON: while decoding JSON: json: unknown field "objectVersionHistroy"`},
		{name: "empty list", objects: "array: []\n", max: 4, wantErr: `invalid object: objects lists no object`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseObjects(tt.objects, tt.max)
			if tt.wantErr == "" {
				if err != nil || len(got) != tt.want {
					t.Fatalf("ParseObjects = %d objects, %v; want %d objects", len(got), err, tt.want)
				}
				return
			}
			if err == nil || err.Error() != tt.wantErr {
				t.Fatalf("ParseObjects error:\n got %v\nwant %s", err, tt.wantErr)
			}
			if !errors.Is(err, ErrInvalidObject) || errors.Is(err, ErrTooManyObjects) != tt.tooMany {
				t.Fatalf("error %v: Is(ErrInvalidObject)=%v Is(ErrTooManyObjects)=%v, want true/%v", err,
					errors.Is(err, ErrInvalidObject), errors.Is(err, ErrTooManyObjects), tt.tooMany)
			}
		})
	}
}

// TestParseAliasListSameObjectTwice: the webhook's grammar refuses a second alias of
// one object, naming both entries.
func TestParseAliasListSameObjectTwice(t *testing.T) {
	_, err := ParseAliasList("db=one, secret:DB=two", DefaultMaxObjects)
	var ee *EntryError
	if !errors.As(err, &ee) || ee.Entry != 2 {
		t.Fatalf("ParseAliasList error %v, want an EntryError for entry 2", err)
	}
	const want = `entry 2 "secret:DB=two": entry 1 already reads secret "DB" (same version, format and encoding); list it once`
	if err.Error() != want {
		t.Fatalf("error:\n got %s\nwant %s", err, want)
	}
	if _, err := ParseAliasList("db=one, db=two;encoding=base64", DefaultMaxObjects); err != nil {
		t.Fatalf("one secret in two encodings: %v", err)
	}
}

// TestFormatAliasList: objects as a SecretProviderClass states them become the alias
// list that parses back to them, defaults left out; what the grammar cannot say is an
// error naming the object.
func TestFormatAliasList(t *testing.T) {
	objects := []Object{
		{Name: "DatabaseLogin", Alias: "DATABASE_LOGIN", Type: TypeSecret},
		{Name: "web-tls", Alias: "tls.pem", Type: TypeCert},
		{Name: "signing", Alias: "old.key", Version: "0123456789ABCDEF0123456789abcdef", FilePermission: "400"},
		{Name: "sign-key", Alias: "sign-key", Type: TypeKey, VersionHistory: "1"},
		{Name: "tls", Format: FormatPFX},
		{Name: "blob", Encoding: EncodingBase64, FilePermission: "0o440"},
	}
	got, err := FormatAliasList(objects)
	want := "DatabaseLogin=DATABASE_LOGIN, cert:web-tls=tls.pem, signing@0123456789abcdef0123456789abcdef=old.key;mode=0400, key:sign-key=sign-key, tls;format=pfx, blob;encoding=base64;mode=0440"
	if err != nil || got != want {
		t.Fatalf("FormatAliasList = %q, %v\nwant %q", got, err, want)
	}
	for _, tc := range []struct {
		objects []Object
		want    string
	}{
		{nil, "no objects: an alias list names at least one"},
		{[]Object{{Name: "a"}, {Name: "b", VersionHistory: "3"}}, `object 2 "b": invalid object: objectVersionHistory: "3" is not supported: kvinject mounts one version per object`},
		{[]Object{{Name: "a/b"}}, `object 1 "a/b": invalid object: objectName:`},
	} {
		if _, err := FormatAliasList(tc.objects); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("FormatAliasList(%+v) = %v, want %q", tc.objects, err, tc.want)
		}
	}
}
