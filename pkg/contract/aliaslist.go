package contract

import (
	"errors"
	"fmt"
	"strings"
)

// EntryError is what is wrong with an alias list: the entry at fault and the rule it
// breaks, said so that the pod's author knows what to change. The webhook turns it into
// an admission denial that also names the annotation.
type EntryError struct {
	// Entry is the 1-based number of the entry at fault, 0 for the list as a whole.
	Entry int
	// Text is the entry as written (trimmed), empty for none.
	Text string
	// Rule says what is wrong and how to fix it.
	Rule string
}

// maxEchoed bounds how much of a user's entry a message repeats.
const maxEchoed = 160

func (e *EntryError) Error() string {
	if e.Entry == 0 {
		return e.Rule
	}
	return fmt.Sprintf("entry %d %q: %s", e.Entry, truncate(e.Text, maxEchoed), e.Rule)
}

// ParseAliasList parses and validates the kvinject.io/secrets alias list:
//
//	entry   = [type ":"] name ["@" version] ["=" alias] *(";" option)
//	type    = "secret" | "key" | "cert"                 (default secret)
//	name    = 1-127 of [0-9A-Za-z-]
//	version = 32 hex digits                             (default: latest)
//	alias   = [A-Za-z0-9_][A-Za-z0-9._-]*               (default: name)
//	option  = "format=" ("pem"|"pfx") | "encoding=" ("utf-8"|"base64"|"hex")
//	        | "mode=" octal (0400..0777)
//
// Entries are separated by commas; blanks and newlines around entries and tokens are
// ignored. At most maxEntries entries are allowed, and no two may write the same file.
// Every error is an *EntryError naming the entry and the rule. The objects returned
// pass Object.Validate.
func ParseAliasList(list string, maxEntries int) ([]Object, error) {
	if strings.TrimSpace(list) == "" {
		return nil, &EntryError{Rule: "the list is empty: name at least one Key Vault object, for example \"DatabaseLogin=DATABASE_LOGIN\""}
	}
	entries := strings.Split(list, ",")
	if len(entries) > maxEntries {
		return nil, &EntryError{Rule: fmt.Sprintf("the list has %d entries; at most %d are allowed (maxEntries of the cluster configuration)", len(entries), maxEntries)}
	}
	objects := make([]Object, 0, len(entries))
	files := make(map[string]int, len(entries))
	for i, raw := range entries {
		n := i + 1
		text := strings.TrimSpace(raw)
		if text == "" {
			return nil, &EntryError{Entry: n, Rule: "the entry is empty: remove the extra ','"}
		}
		o, rule := parseEntry(text)
		if rule != "" {
			return nil, &EntryError{Entry: n, Text: text, Rule: rule}
		}
		file := o.FileName()
		if first, dup := files[file]; dup {
			return nil, &EntryError{Entry: n, Text: text,
				Rule: fmt.Sprintf("the file name %q is already used by entry %d; give one of them another name with \"=alias\"", file, first)}
		}
		for j, prev := range objects {
			if SameObject(prev, o) {
				return nil, &EntryError{Entry: n, Text: text,
					Rule: fmt.Sprintf("entry %d already reads %s %q (same version, format and encoding); list it once", j+1, o.ObjectType(), o.Name)}
			}
		}
		files[file] = n
		objects = append(objects, o)
	}
	return objects, nil
}

// parseEntry parses one trimmed entry; a non-empty rule says why it is invalid.
func parseEntry(text string) (o Object, rule string) {
	head, options, _ := strings.Cut(text, ";")
	head = strings.TrimSpace(head)

	// The alias is split off first: the characters of type, name and version never
	// include '=', so a ':' or '@' after it belongs to a (bad) alias.
	if left, alias, ok := strings.Cut(head, "="); ok {
		alias = strings.TrimSpace(alias)
		if alias == "" {
			return o, "the file name after '=' is empty: write name=FILE_NAME or drop the '='"
		}
		if err := ValidateAlias(alias); err != nil {
			return o, err.Error()
		}
		o.Alias = alias
		head = strings.TrimSpace(left)
	}
	if typ, rest, ok := strings.Cut(head, ":"); ok {
		switch t := ObjectType(strings.TrimSpace(typ)); t {
		case TypeSecret, TypeKey, TypeCert:
			o.Type = t
		default:
			return o, fmt.Sprintf("%q is not an object type: use secret, key or cert", string(t))
		}
		head = strings.TrimSpace(rest)
	} else {
		o.Type = TypeSecret
	}
	if name, version, ok := strings.Cut(head, "@"); ok {
		version = strings.TrimSpace(version)
		if err := ValidateVersion(version); err != nil {
			return o, err.Error()
		}
		o.Version = strings.ToLower(version)
		head = strings.TrimSpace(name)
	}
	if err := ValidateName(head); err != nil {
		return o, err.Error()
	}
	o.Name = head
	if o.Alias == "" {
		// The name is the file name: a name Key Vault allows may not be one ("-").
		if err := ValidateAlias(head); err != nil {
			return o, err.Error() + ": give the file a name with \"=alias\""
		}
	}

	if options != "" {
		if rule := parseOptions(&o, options); rule != "" {
			return o, rule
		}
	}
	if err := o.Validate(); err != nil {
		var fe *FieldError
		if errors.As(err, &fe) {
			return o, fe.Err.Error()
		}
		return o, err.Error()
	}
	return o, ""
}

// parseOptions applies the ";"-separated options to o.
func parseOptions(o *Object, options string) (rule string) {
	seen := map[string]bool{}
	for _, opt := range strings.Split(options, ";") {
		opt = strings.TrimSpace(opt)
		if opt == "" {
			return "an option after ';' is empty: remove the extra ';'"
		}
		key, value, ok := strings.Cut(opt, "=")
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if !ok {
			return fmt.Sprintf("the option %q has no value: write format=pem|pfx, encoding=utf-8|base64|hex or mode=0400..0777", opt)
		}
		if seen[key] {
			return fmt.Sprintf("the option %q is given twice", key)
		}
		seen[key] = true
		switch key {
		case "format":
			if value != FormatPEM && value != FormatPFX {
				return fmt.Sprintf("format %q is not a format: use pem or pfx", value)
			}
			o.Format = value
		case "encoding":
			if value != EncodingUTF8 && value != EncodingBase64 && value != EncodingHex {
				return fmt.Sprintf("encoding %q is not an encoding: use utf-8, base64 or hex", value)
			}
			o.Encoding = value
		case "mode":
			m, err := ParseMode(value)
			if err != nil {
				return err.Error()
			}
			o.FilePermission = fmt.Sprintf("%04o", m)
		default:
			return fmt.Sprintf("%q is not an option: use format, encoding or mode", key)
		}
	}
	return ""
}

// FormatAliasList writes objects as a kvinject.io/secrets alias list: the inverse of
// ParseAliasList, whose result it gives back when parsed. kubectl kvinject migrate
// turns a SecretProviderClass's objects into the annotation with it. An object that
// fails Validate is an error naming it (objectVersionHistory 0 and 1, one version, are
// what every entry mounts and are not written).
func FormatAliasList(objects []Object) (string, error) {
	if len(objects) == 0 {
		return "", errors.New("no objects: an alias list names at least one")
	}
	entries := make([]string, 0, len(objects))
	for i, o := range objects {
		if err := o.Validate(); err != nil {
			return "", fmt.Errorf("object %d %q: %w", i+1, truncate(o.Name, maxEchoed), err)
		}
		var b strings.Builder
		if t := o.ObjectType(); t != TypeSecret {
			b.WriteString(string(t) + ":")
		}
		b.WriteString(o.Name)
		if o.Version != "" {
			b.WriteString("@" + strings.ToLower(o.Version))
		}
		if o.Alias != "" {
			b.WriteString("=" + o.Alias)
		}
		if o.Format != "" {
			b.WriteString(";format=" + o.Format)
		}
		if o.Encoding != "" {
			b.WriteString(";encoding=" + o.Encoding)
		}
		if o.FilePermission != "" {
			m, _ := ParseMode(o.FilePermission) // Validate checked it
			fmt.Fprintf(&b, ";mode=%04o", m)
		}
		entries = append(entries, b.String())
	}
	return strings.Join(entries, ", "), nil
}
