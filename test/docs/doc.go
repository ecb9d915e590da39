// Package docs checks the documentation against the code: docs/troubleshooting.md must
// quote every message the two programs can show a user (see
// TestTroubleshootingCoversEveryMessage for the rule). It reads the source with
// go/parser and builds nothing, so it runs in a second.
package docs
