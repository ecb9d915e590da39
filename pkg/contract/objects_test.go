package contract

import (
	"testing"

	"sigs.k8s.io/yaml"
)

// referenceObjects is how MarshalObjects wrote the objects attribute before
// its fast path: each object through sigs.k8s.io/yaml, then the "array:" of them. The
// attribute must stay byte for byte the same: the CSI driver parses it, and a changed
// attribute changes every pod's patch.
func referenceObjects(objects []Object) (string, error) {
	arr := struct {
		Array []string `json:"array"`
	}{Array: make([]string, 0, len(objects))}
	for _, o := range objects {
		b, err := yaml.Marshal(o)
		if err != nil {
			return "", err
		}
		arr.Array = append(arr.Array, string(b))
	}
	b, err := yaml.Marshal(arr)
	return string(b), err
}

func checkObjectsAttribute(t *testing.T, objects []Object) {
	t.Helper()
	want, wantErr := referenceObjects(objects)
	got, err := MarshalObjects(objects)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("MarshalObjects(%+v): error %v, reference error %v", objects, err, wantErr)
	}
	if got != want {
		t.Fatalf("MarshalObjects(%+v):\n%s\nreference:\n%s", objects, got, want)
	}
}

// TestObjectsAttributeMatchesYAML holds MarshalObjects to the YAML library's
// output on every value that YAML 1.1 could read as something other than a string, on
// both sides of the fast path.
func TestObjectsAttributeMatchesYAML(t *testing.T) {
	const hex = "0123456789abcdef0123456789abcdef"
	var scalars = []string{
		"", "a", "Z", "_", "_x", "x-y", "a.b", "A1", "db-password", "DATABASE_LOGIN",
		"y", "Y", "yes", "Yes", "YES", "n", "N", "no", "NO", "No", "true", "True", "TRUE",
		"false", "False", "on", "On", "ON", "off", "Off", "OFF", "null", "Null", "NULL",
		"nULL", "yES", "tRUE", "o", "t", "f", "~", "<<", ".inf", ".nan", "-.inf", "-", "--", "---",
		"-a", "-1", "+1", "0", "1", "12", "123", "0440", "440", "0777", "0999", "0o440",
		"0x1F", "0xdeadbeef", "0b101", "0b1a", "0_1", "1_000", "1e5", "1E5", "1.5", "1.",
		".5", "1.2.3", "2026-11-27", "2026-1-2", "1-2", "12:30", "deadbeef", "dead.beef",
		hex, "0b" + hex[2:], "0b010101010101010101010101010101", "1e" + hex[2:],
		"12345678901234567890123456789012", "ABCDEF0123456789ABCDEF0123456789",
		"eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee", "1eeeeeeeeeeeeeeeeeeeeeeeeeeeeeee",
		"a b", "a:b", "a#b", "a\nb", "é", "secret", "key", "cert", "pem", "pfx", "utf-8",
		"base64", "hex", "a234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901",
	}
	fields := []func(*Object, string){
		func(o *Object, s string) { o.Name = s },
		func(o *Object, s string) { o.Alias = s },
		func(o *Object, s string) { o.Type = ObjectType(s) },
		func(o *Object, s string) { o.Version = s },
		func(o *Object, s string) { o.VersionHistory = s },
		func(o *Object, s string) { o.Format = s },
		func(o *Object, s string) { o.Encoding = s },
		func(o *Object, s string) { o.FilePermission = s },
	}
	checkObjectsAttribute(t, nil)
	checkObjectsAttribute(t, []Object{})
	full := Object{Name: "tls", Alias: "tls.pfx", Type: TypeSecret, Version: hex,
		VersionHistory: "1", Format: FormatPFX, Encoding: EncodingBase64, FilePermission: "0440"}
	checkObjectsAttribute(t, []Object{full, {Name: "DatabaseLogin"}})
	for _, set := range fields {
		for _, s := range scalars {
			o := Object{Name: "DatabaseLogin", Alias: "DATABASE_LOGIN", Type: TypeSecret}
			set(&o, s)
			checkObjectsAttribute(t, []Object{o})
			checkObjectsAttribute(t, []Object{{Name: "first"}, o})
		}
	}
	list, err := ParseAliasList(`a, b=B, key:c, cert:d@`+hex+`=D;mode=0400, e;format=pfx, f;encoding=hex;mode=777`, DefaultMaxObjects)
	if err != nil {
		t.Fatal(err)
	}
	checkObjectsAttribute(t, list)
}

// FuzzObjectsAttribute holds MarshalObjects to the YAML library's output on
// arbitrary objects, and on the objects of arbitrary alias lists.
func FuzzObjectsAttribute(f *testing.F) {
	f.Add("DatabaseLogin", "DATABASE_LOGIN", "secret", "", "", "", "", "")
	f.Add("tls", "tls.pfx", "cert", "0123456789abcdef0123456789abcdef", "1", "pfx", "base64", "0440")
	f.Add("123", "yes", "", "0b0101", "0", "pem", "utf-8", "0o440")
	f.Fuzz(func(t *testing.T, name, alias, typ, version, history, format, encoding, perm string) {
		o := Object{Name: name, Alias: alias, Type: ObjectType(typ), Version: version,
			VersionHistory: history, Format: format, Encoding: encoding, FilePermission: perm}
		checkObjectsAttribute(t, []Object{o})
		checkObjectsAttribute(t, []Object{{Name: "DatabaseLogin"}, o})
		if objects, err := ParseAliasList(name+"="+alias+";mode="+perm, DefaultMaxObjects); err == nil {
			checkObjectsAttribute(t, objects)
		}
	})
}
