//go:build !linux

package bench

import "os/exec"

// setParentDeath does nothing where the kernel cannot signal a child when
// its parent dies; the bench stops its children itself.
func setParentDeath(cmd *exec.Cmd) {}
