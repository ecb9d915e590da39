package contract

import (
	"errors"
	"slices"
	"testing"
)

// FuzzParseAliasList checks that the parser never panics, that every error is an EntryError,
// and that every accepted list obeys the grammar: valid objects, unique file names,
// no more entries than allowed, a volume attribute that parses back the same, and an
// alias list written back by FormatAliasList that parses to the same objects.
// Seeds: testdata/fuzz/FuzzParseAliasList.
func FuzzParseAliasList(f *testing.F) {
	for _, s := range []string{
		"DatabaseLogin=DATABASE_LOGIN, DatabasePassword=DATABASE_PASSWORD",
		"cert:web-tls=tls.pem, secret:signing@0123456789abcdef0123456789abcdef=old.key;mode=0400",
		"key:k;encoding=hex", "a=..", "a=../b", "a,,b", "x;format=pfx;mode=0777",
	} {
		f.Add(s)
	}
	const max = 8
	f.Fuzz(func(t *testing.T, list string) {
		objects, err := ParseAliasList(list, max)
		if err != nil {
			var e *EntryError
			if !errors.As(err, &e) {
				t.Fatalf("error %v is not an EntryError", err)
			}
			return
		}
		if len(objects) == 0 || len(objects) > max {
			t.Fatalf("%d objects accepted", len(objects))
		}
		files := map[string]bool{}
		for _, o := range objects {
			if err := o.Validate(); err != nil {
				t.Fatalf("accepted an invalid object %+v: %v", o, err)
			}
			if err := ValidateAlias(o.FileName()); err != nil {
				t.Fatalf("accepted file name %q: %v", o.FileName(), err)
			}
			if files[o.FileName()] {
				t.Fatalf("accepted duplicate file name %q", o.FileName())
			}
			files[o.FileName()] = true
		}
		attr, err := MarshalObjects(objects)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseObjects(attr, max)
		if err != nil {
			t.Fatalf("the volume attribute of an accepted list does not parse: %v\n%s", err, attr)
		}
		if len(back) != len(objects) {
			t.Fatalf("round trip lost objects: %d != %d", len(back), len(objects))
		}
		for i := range back {
			if back[i] != objects[i] {
				t.Fatalf("round trip changed object %d: %+v != %+v", i, back[i], objects[i])
			}
		}
		// FormatAliasList is ParseAliasList's inverse.
		formatted, err := FormatAliasList(objects)
		if err != nil {
			t.Fatalf("FormatAliasList of an accepted list: %v", err)
		}
		again, err := ParseAliasList(formatted, max)
		if err != nil {
			t.Fatalf("FormatAliasList wrote %q, which does not parse: %v", formatted, err)
		}
		if !slices.Equal(again, objects) {
			t.Fatalf("FormatAliasList changed the objects: %q gives %+v, want %+v", formatted, again, objects)
		}
	})
}
