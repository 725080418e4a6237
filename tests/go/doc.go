// Package conformance runs real Go Azure clients (azidentity, armcompute, go-autorest adal)
// against podid's Azure emulator on loopback. The tests are in the _test.go files; this package
// holds only the network guard they give every HTTP transport. See README.md.
package conformance
