// Package docs checks the documentation against the code: docs/troubleshooting.md must
// quote every message the two programs can show a user (see
// TestTroubleshootingCoversEveryMessage for the rule), and docs/migration.md must show
// kubectl kvinject migrate's example as its golden test has it. It reads files and
// the source with go/parser and builds nothing, so it runs in a second.
package docs
