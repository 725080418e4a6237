//go:build !linux

package conformance

import "os/exec"

// setParentDeathSignal: only Linux can tie the emulator's life to the test process; elsewhere
// TestMain's cleanup is all there is.
func setParentDeathSignal(cmd *exec.Cmd) {}
