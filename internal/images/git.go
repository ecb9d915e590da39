package images

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Source is the repository the images' source annotation names.
const Source = "https://github.com/kvinject/kvinject"

// FromGit returns Options for the checkout at repoRoot: the revision is HEAD's
// commit, and Created is HEAD's commit time, so the same commit builds the same
// images whenever and wherever it is built.
func FromGit(ctx context.Context, repoRoot string) (Options, error) {
	out, err := exec.CommandContext(ctx, "git", "-C", repoRoot, "log", "-1", "--format=%H %ct").Output()
	if err != nil {
		return Options{}, fmt.Errorf("git log in %s: %w", repoRoot, err)
	}
	rev, ct, ok := strings.Cut(strings.TrimSpace(string(out)), " ")
	secs, perr := strconv.ParseInt(ct, 10, 64)
	if !ok || perr != nil {
		return Options{}, fmt.Errorf("git log: unexpected output %q", out)
	}
	return Options{RepoRoot: repoRoot, Revision: rev, Source: Source, Created: time.Unix(secs, 0).UTC()}, nil
}
