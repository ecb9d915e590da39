package docs

import (
	"os"
	"strings"
	"testing"
)

// TestMigrationPageShowsMigrate: docs/migration.md shows the example workload and what
// kubectl kvinject migrate makes of it exactly as pkg/migrate's golden test has them
// (testdata/before.yaml without its comments, and the Deployment of after.yaml).
func TestMigrationPageShowsMigrate(t *testing.T) {
	read := func(p string) string {
		b, err := os.ReadFile("../../" + p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	page := read("docs/migration.md")
	var before []string
	for _, line := range strings.Split(read("pkg/migrate/testdata/before.yaml"), "\n") {
		if !strings.HasPrefix(line, "#") {
			before = append(before, line)
		}
	}
	after := read("pkg/migrate/testdata/after.yaml")
	after = after[strings.Index(after, "apiVersion: apps/v1"):]
	for name, block := range map[string]string{"before.yaml": strings.Join(before, "\n"), "after.yaml": after} {
		if !strings.Contains(page, "```yaml\n"+strings.TrimSpace(block)+"\n```") {
			t.Errorf("docs/migration.md does not show pkg/migrate/testdata/%s as it is:\n%s", name, block)
		}
	}
}
