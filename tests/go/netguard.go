package conformance

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// ErrLeavesLoopback is what every guarded dial returns for an address outside 127.0.0.0/8.
var ErrLeavesLoopback = errors.New("network guard: refusing to dial outside 127.0.0.0/8")

var loopback = netip.MustParsePrefix("127.0.0.0/8")

// DialFunc is the shape of net.Dialer.DialContext and http.Transport.DialContext.
type DialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// Guard wraps a dial function and lets through only TCP dials to a literal IPv4 address in
// 127.0.0.0/8. Host names are refused without being resolved (no DNS query leaves the process),
// and the wrapped dial function is never called for a refused address, so no packet is sent.
type Guard struct {
	dial DialFunc

	mu      sync.Mutex
	refused []string
}

// NewGuard guards dial; nil means a plain net.Dialer.
func NewGuard(dial DialFunc) *Guard {
	if dial == nil {
		dial = (&net.Dialer{Timeout: 10 * time.Second}).DialContext
	}
	return &Guard{dial: dial}
}

// CheckLoopback returns nil when address (host:port) is a literal IPv4 address in 127.0.0.0/8
// and network is TCP, and an error wrapping ErrLeavesLoopback otherwise.
func CheckLoopback(network, address string) error {
	switch network {
	case "tcp", "tcp4":
	default:
		return fmt.Errorf("%w: network %q to %q", ErrLeavesLoopback, network, address)
	}
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("%w: %q is not host:port: %v", ErrLeavesLoopback, address, err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("%w: %q is a name, not a literal loopback address", ErrLeavesLoopback, address)
	}
	if ip = ip.Unmap(); !ip.Is4() || !loopback.Contains(ip) {
		return fmt.Errorf("%w: %s", ErrLeavesLoopback, address)
	}
	return nil
}

// DialContext checks the address before anything is dialed.
func (g *Guard) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if err := CheckLoopback(network, address); err != nil {
		g.mu.Lock()
		g.refused = append(g.refused, network+" "+address)
		g.mu.Unlock()
		return nil, err
	}
	return g.dial(ctx, network, address)
}

// Refused lists every address this guard has refused so far.
func (g *Guard) Refused() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.refused...)
}

// NewTransport is the only HTTP transport the tests give to clients: dials go through the
// guard, no proxy is ever used (whatever the environment says), and TLS trusts exactly roots
// (the emulator's CA), not the system's store.
func NewTransport(g *Guard, roots *x509.CertPool) *http.Transport {
	if roots == nil {
		roots = x509.NewCertPool() // trust nothing rather than the system store
	}
	return &http.Transport{
		Proxy:               nil,
		DialContext:         g.DialContext,
		TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
	}
}
