package mutate

import (
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/kvinject/kvinject/pkg/keyvault"
)

// referenceObjects is how keyvault.MarshalObjects wrote the objects attribute before
// its fast path: each object through sigs.k8s.io/yaml, then the "array:" of them. The
// attribute must stay byte for byte the same: the CSI driver parses it, and a changed
// attribute changes every pod's patch.
func referenceObjects(objects []keyvault.Object) (string, error) {
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

func checkObjectsAttribute(t *testing.T, objects []keyvault.Object) {
	t.Helper()
	want, wantErr := referenceObjects(objects)
	got, err := keyvault.MarshalObjects(objects)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("MarshalObjects(%+v): error %v, reference error %v", objects, err, wantErr)
	}
	if got != want {
		t.Fatalf("MarshalObjects(%+v):\n%s\nreference:\n%s", objects, got, want)
	}
}

// TestObjectsAttributeMatchesYAML holds keyvault.MarshalObjects to the YAML library's
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
	fields := []func(*keyvault.Object, string){
		func(o *keyvault.Object, s string) { o.Name = s },
		func(o *keyvault.Object, s string) { o.Alias = s },
		func(o *keyvault.Object, s string) { o.Type = keyvault.ObjectType(s) },
		func(o *keyvault.Object, s string) { o.Version = s },
		func(o *keyvault.Object, s string) { o.VersionHistory = s },
		func(o *keyvault.Object, s string) { o.Format = s },
		func(o *keyvault.Object, s string) { o.Encoding = s },
		func(o *keyvault.Object, s string) { o.FilePermission = s },
	}
	checkObjectsAttribute(t, nil)
	checkObjectsAttribute(t, []keyvault.Object{})
	full := keyvault.Object{Name: "tls", Alias: "tls.pfx", Type: keyvault.TypeSecret, Version: hex,
		VersionHistory: "1", Format: keyvault.FormatPFX, Encoding: keyvault.EncodingBase64, FilePermission: "0440"}
	checkObjectsAttribute(t, []keyvault.Object{full, {Name: "DatabaseLogin"}})
	for _, set := range fields {
		for _, s := range scalars {
			o := keyvault.Object{Name: "DatabaseLogin", Alias: "DATABASE_LOGIN", Type: keyvault.TypeSecret}
			set(&o, s)
			checkObjectsAttribute(t, []keyvault.Object{o})
			checkObjectsAttribute(t, []keyvault.Object{{Name: "first"}, o})
		}
	}
	list, err := ParseSecrets(`a, b=B, key:c, cert:d@`+hex+`=D;mode=0400, e;format=pfx, f;encoding=hex;mode=777`, DefaultMaxEntries)
	if err != nil {
		t.Fatal(err)
	}
	checkObjectsAttribute(t, list)
}

// FuzzObjectsAttribute holds keyvault.MarshalObjects to the YAML library's output on
// arbitrary objects, and on the objects of arbitrary alias lists.
func FuzzObjectsAttribute(f *testing.F) {
	f.Add("DatabaseLogin", "DATABASE_LOGIN", "secret", "", "", "", "", "")
	f.Add("tls", "tls.pfx", "cert", "0123456789abcdef0123456789abcdef", "1", "pfx", "base64", "0440")
	f.Add("123", "yes", "", "0b0101", "0", "pem", "utf-8", "0o440")
	f.Fuzz(func(t *testing.T, name, alias, typ, version, history, format, encoding, perm string) {
		o := keyvault.Object{Name: name, Alias: alias, Type: keyvault.ObjectType(typ), Version: version,
			VersionHistory: history, Format: format, Encoding: encoding, FilePermission: perm}
		checkObjectsAttribute(t, []keyvault.Object{o})
		checkObjectsAttribute(t, []keyvault.Object{{Name: "DatabaseLogin"}, o})
		if objects, err := ParseSecrets(name+"="+alias+";mode="+perm, DefaultMaxEntries); err == nil {
			checkObjectsAttribute(t, objects)
		}
	})
}
