package docs

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// page is the troubleshooting page, relative to the repository root.
const page = "docs/troubleshooting.md"

// scanned holds the code of the two programs, relative to the repository root: every
// package under pkg/, and internal/program (the flags, logging and exit codes both
// programs share). cmd/ holds only the two mains, which print nothing of their own.
var scanned = []string{"pkg", "internal/program"}

// notMessages are the prose literals of the scanned code that no user reads, each with
// the reason. Keep it short: a literal a user can read belongs in the page.
var notMessages = map[string]string{
	"PRIVATE KEY": "a PEM block type written into a volume's file, not a message",
	"PUBLIC KEY":  "a PEM block type written into a volume's file, not a message",
	"isn't configured to acquire tokens for tenant": "the phrase of azidentity's error that keyvault.classify looks for; " +
		"what kvinject writes instead (the vault's challenge names another tenant) is checked",
	"Usage of %s (%s):\n%s":    "the heading of --help, not an error",
	"no API server configured": "csi.ErrNoAPIServer, a signal inside NewPlugin (run without an API server); never printed",
	// The classes of a *keyvault.ObjectError are for errors.Is (they choose the gRPC
	// code); ObjectError.Error never prints them.
	"object not found":      "keyvault.ErrNotFound: an ObjectError class, never printed",
	"access denied":         "keyvault.ErrForbidden: an ObjectError class, never printed",
	"object disabled":       "keyvault.ErrDisabled: an ObjectError class, never printed",
	"authentication failed": "keyvault.ErrAuth: an ObjectError class, never printed",
	"wrong tenant":          "keyvault.ErrWrongTenant: an ObjectError class, never printed",
	"key vault unavailable": "keyvault.ErrUnavailable: an ObjectError class, never printed",
	"backing off":           "keyvault.ErrBackingOff, for errors.Is; a BackoffError prints its own text, which is checked",
}

// TestTroubleshootingCoversEveryMessage keeps docs/troubleshooting.md complete. It
// reads the programs' code (scanned, without tests and generated files) with go/parser
// and collects three things:
//
//   - Messages: every string literal that holds prose, that is two words in a row once
//     its formatting verbs (%q, %w, ...) are taken out. Such a literal is text a user
//     can read: an admission denial, warning or error, a KeyVaultAccessPolicy's status
//     or event, a pod event, a FailedMount (the gRPC status of a CSI call), the node
//     plugin's health probe, a log line or a start-up error. Literals are found
//     wherever they are (a format, a struct field, a returned rule, a sentinel error),
//     so no way of building a message escapes the rule. Left out, by role: imports and
//     struct tags; the arguments of flag definitions (pflag's Bool, StringVar, ...:
//     their help is what --help prints); the values of Help fields (Prometheus help,
//     read on /metrics); the arguments of calls to a method named Info (Info log
//     lines report normal operation, not trouble); and notMessages, each with its
//     reason.
//   - Reasons: the value of every constant whose name starts with Reason (event and
//     condition reasons, such as KeyVaultRefreshFailed).
//   - gRPC codes: every codes.X the code returns (InvalidArgument, ...).
//
// The matching rule. A message is covered when each of its prose fragments (the text
// between two formatting verbs, trimmed of blanks and of ':', ';', ',' and '.' at
// either end, kept when it holds two words in a row) appears in the page. Quoting the
// message with its verbs written as <placeholders> does that. A reason or a code is
// covered when it appears in the page as a code span (`KeyVaultRefreshFailed`). Runs
// of white space compare equal to one blank (a quote may wrap), and the page's `\|`
// (a '|' in a table cell) reads as '|'.
//
// A failure names the message, where it is in the code, and the fragments the page
// lacks: quote the message in the page, with what it means and the fix.
func TestTroubleshootingCoversEveryMessage(t *testing.T) {
	root := repoRoot(t)
	raw, err := os.ReadFile(filepath.Join(root, page))
	if err != nil {
		t.Fatal(err)
	}
	text := normalize(strings.ReplaceAll(string(raw), `\|`, "|"))

	found := collect(t, root)
	// A scan that finds (almost) nothing is broken, not complete.
	if len(found.messages) < 200 || len(found.reasons) < 3 || len(found.codes) < 5 {
		t.Fatalf("the scan found %d messages, %d reasons and %d gRPC codes: is it reading the code under %s?",
			len(found.messages), len(found.reasons), len(found.codes), root)
	}

	fragments := 0
	for _, m := range found.messages {
		if _, ok := notMessages[m.text]; ok {
			continue
		}
		var missing []string
		for _, f := range m.fragments {
			fragments++
			if !strings.Contains(text, f) {
				missing = append(missing, f)
			}
		}
		if len(missing) > 0 {
			t.Errorf("%s: %s lacks the message %q: add %q", m.pos, page, m.text, missing)
		}
	}
	for _, s := range sortedKeys(found.reasons) {
		if !strings.Contains(text, "`"+s+"`") {
			t.Errorf("%s: %s lacks the reason `%s`", found.reasons[s], page, s)
		}
	}
	for _, s := range sortedKeys(found.codes) {
		if !strings.Contains(text, "`"+s+"`") {
			t.Errorf("%s: %s lacks the gRPC code `%s`", found.codes[s], page, s)
		}
	}
	for s := range notMessages {
		if !slices.ContainsFunc(found.messages, func(m message) bool { return m.text == s }) {
			t.Errorf("notMessages[%q] matches no literal in the code any more: remove it", s)
		}
	}
	t.Logf("checked %d messages (%d fragments; %d literals left out by notMessages), %d reasons and %d gRPC codes against %s",
		len(found.messages)-len(notMessages), fragments, len(notMessages), len(found.reasons), len(found.codes), page)
}

// TestFragments pins the matching rule on examples.
func TestFragments(t *testing.T) {
	for _, tc := range []struct {
		name, literal string
		want          []string
	}{
		{"plain rule", "the selector is empty", []string{"the selector is empty"}},
		{"wrapped sentinel", "%w: the volume must be read-only; set readOnly: true on the CSI volume",
			[]string{"the volume must be read-only; set readOnly: true on the CSI volume"}},
		{"verbs split it", "namespace %q may not use vault %q: %s lists it in %s",
			[]string{"may not use vault", "lists it in"}},
		{"a wrapper of two words is checked", "target path %q: %w", []string{"target path"}},
		{"width and flags", "%04o items; at most %-3d are allowed", []string{"items; at most", "are allowed"}},
		{"white space collapses", "%s: invalid configuration:\n%v\n", []string{"invalid configuration"}},
		{"a wrapper of one word has none", "write %q: %w", nil},
		{"a format of verbs has none", "%q|%q|%s", nil},
		{"an identifier has none", "objectName", nil},
		{"a path has none", "/spec/%s/%d/volumeMounts", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := proseFragments(tc.literal); !slices.Equal(got, tc.want) {
				t.Errorf("proseFragments(%q) = %q, want %q", tc.literal, got, tc.want)
			}
		})
	}
}

// message is a prose literal of the code.
type message struct {
	text      string
	pos       string
	fragments []string
}

// scan is what collect finds: messages in file order (one per distinct text), and
// reasons and codes with where they first appear.
type scan struct {
	messages []message
	reasons  map[string]string
	codes    map[string]string
}

var (
	// verb is a fmt formatting verb, with flags, width, precision and index.
	verb = regexp.MustCompile(`%[-+# 0]*(\[\d+\])?(\d+|\*)?(\.(\d+|\*)?)?[a-zA-Z%]`)
	// prose is two words in a row.
	prose = regexp.MustCompile(`[A-Za-z][A-Za-z'-]* +[A-Za-z(]`)
	// flagDefinition names pflag's flag definitions (fs.StringVar, fs.Bool, ...).
	flagDefinition = regexp.MustCompile(`^(Bool|String|StringSlice|StringArray|Int|Int32|Int64|Uint|Uint32|Uint64|Float64|Duration)(Var)?P?$`)
)

// proseFragments returns the fragments of literal between formatting verbs that hold
// prose, normalized and trimmed, without repeats.
func proseFragments(literal string) []string {
	var out []string
	for _, part := range verb.Split(literal, -1) {
		f := strings.Trim(normalize(part), " :;,.")
		if prose.MatchString(f) && !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}

// normalize collapses every run of white space into one blank.
func normalize(s string) string { return strings.Join(strings.Fields(s), " ") }

// collect reads every non-test, non-generated Go file under the scanned directories
// (testdata excluded).
func collect(t *testing.T, root string) scan {
	t.Helper()
	found := scan{reasons: map[string]string{}, codes: map[string]string{}}
	seen := map[string]bool{}
	fset := token.NewFileSet()
	for _, dir := range scanned {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if d.Name() == "testdata" {
					return filepath.SkipDir
				}
				return nil
			}
			name := d.Name()
			if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") || strings.HasPrefix(name, "zz_generated") {
				return nil
			}
			f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			where := func(n ast.Node) string {
				p := fset.Position(n.Pos())
				rel, _ := filepath.Rel(root, p.Filename)
				return rel + ":" + strconv.Itoa(p.Line)
			}
			tags := map[ast.Node]bool{}
			ast.Inspect(f, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.ImportSpec:
					return false
				case *ast.Field:
					if n.Tag != nil {
						tags[n.Tag] = true
					}
				case *ast.KeyValueExpr:
					if k, ok := n.Key.(*ast.Ident); ok && k.Name == "Help" {
						return false
					}
				case *ast.CallExpr:
					if sel, ok := n.Fun.(*ast.SelectorExpr); ok && (sel.Sel.Name == "Info" || flagDefinition.MatchString(sel.Sel.Name)) {
						return false
					}
				case *ast.ValueSpec:
					for i, id := range n.Names {
						if !strings.HasPrefix(id.Name, "Reason") || i >= len(n.Values) {
							continue
						}
						if lit, ok := n.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
							if v, err := strconv.Unquote(lit.Value); err == nil {
								if _, dup := found.reasons[v]; !dup {
									found.reasons[v] = where(lit)
								}
							}
						}
					}
				case *ast.SelectorExpr:
					if x, ok := n.X.(*ast.Ident); ok && x.Name == "codes" && n.Sel.Name != "Code" {
						if _, dup := found.codes[n.Sel.Name]; !dup {
							found.codes[n.Sel.Name] = where(n)
						}
					}
				case *ast.BasicLit:
					if n.Kind != token.STRING || tags[n] {
						return true
					}
					v, err := strconv.Unquote(n.Value)
					if err != nil {
						t.Errorf("%s: cannot read the literal %s: %v", where(n), n.Value, err)
						return true
					}
					frags := proseFragments(v)
					if len(frags) == 0 || seen[v] {
						return true
					}
					seen[v] = true
					found.messages = append(found.messages, message{text: v, pos: where(n), fragments: frags})
				}
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return found
}

// repoRoot is the module's root: two levels above this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("no go.mod at %s: run the test from test/docs (go test ./test/docs/)", root)
	}
	return root
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
