package conformance

// The network guard refuses before anything is dialed. These tests give the guard a tripwire
// instead of a real dialer, so even a broken guard could not send a packet from here.

import (
	"context"
	"errors"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/go-autorest/autorest/adal"
)

var errTripwire = errors.New("tripwire: the guard let this dial through")

// tripwire records the dials that reached it and never opens a socket.
type tripwire struct {
	mu    sync.Mutex
	dials []string
}

func (w *tripwire) dial(_ context.Context, network, address string) (net.Conn, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.dials = append(w.dials, network+" "+address)
	return nil, errTripwire
}

func (w *tripwire) reached() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.dials...)
}

func TestGuardRefusesAddressesOutsideLoopbackWithoutDialing(t *testing.T) {
	refused := []struct{ network, address string }{
		{"tcp", "10.0.0.1:443"},
		{"tcp", "169.254.169.254:80"},
		{"tcp4", "20.190.128.1:443"},
		{"tcp", "0.0.0.0:80"},
		{"tcp", "128.0.0.1:80"},
		{"tcp", "[::1]:80"},                      // loopback, but not 127.0.0.0/8
		{"tcp", "[::ffff:10.0.0.1]:443"},         // IPv4-mapped, still outside
		{"tcp", "login.microsoftonline.com:443"}, // a name is never resolved
		{"tcp", "localhost:80"},
		{"udp", "127.0.0.1:53"}, // only TCP
		{"tcp", "127.0.0.1"},    // no port: not an address
	}
	for _, c := range refused {
		wire := &tripwire{}
		guard := NewGuard(wire.dial)
		conn, err := guard.DialContext(context.Background(), c.network, c.address)
		if conn != nil {
			conn.Close()
		}
		if !errors.Is(err, ErrLeavesLoopback) {
			t.Errorf("%s %s: error %v, want the guard's refusal", c.network, c.address, err)
		}
		if reached := wire.reached(); len(reached) != 0 {
			t.Errorf("%s %s: the guard called the dialer: %v", c.network, c.address, reached)
		}
		if got := guard.Refused(); !slices.Equal(got, []string{c.network + " " + c.address}) {
			t.Errorf("%s %s: refusals recorded %v", c.network, c.address, got)
		}
	}

	allowed := []string{"127.0.0.1:8443", "127.1.2.3:9", "[::ffff:127.0.0.1]:80"}
	for _, address := range allowed {
		wire := &tripwire{}
		guard := NewGuard(wire.dial)
		_, err := guard.DialContext(context.Background(), "tcp", address)
		if !errors.Is(err, errTripwire) {
			t.Errorf("%s: error %v, want the guard to pass it to the dialer", address, err)
		}
		if len(guard.Refused()) != 0 {
			t.Errorf("%s: refused %v", address, guard.Refused())
		}
	}
}

func TestGuardedTransportRefusesBeforeConnecting(t *testing.T) {
	wire := &tripwire{}
	client := &http.Client{Transport: NewTransport(NewGuard(wire.dial), emu.roots)}
	for _, url := range []string{"https://10.0.0.1:443/", "http://169.254.169.254/metadata/identity/oauth2/token"} {
		resp, err := client.Get(url)
		if resp != nil {
			resp.Body.Close()
		}
		if !errors.Is(err, ErrLeavesLoopback) {
			t.Errorf("GET %s: error %v, want the guard's refusal", url, err)
		}
	}
	if reached := wire.reached(); len(reached) != 0 {
		t.Errorf("the transport dialed %v", reached)
	}
}

// A client left with its defaults heads for the real Azure hosts; the guard stops it. This is
// why every other test must set each endpoint explicitly.
func TestGuardStopsClientsThatHeadForRealAzure(t *testing.T) {
	t.Run("azidentity with the public cloud and instance discovery", func(t *testing.T) {
		wire := &tripwire{}
		guard := NewGuard(wire.dial)
		cred, err := azidentity.NewClientSecretCredential(tenantID, spClientID, spSecret,
			&azidentity.ClientSecretCredentialOptions{ClientOptions: azcore.ClientOptions{
				Transport: &http.Client{Transport: NewTransport(guard, nil)},
				Retry:     policy.RetryOptions{MaxRetries: -1},
			}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err = cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{armScope}})
		errorContains(t, err, ErrLeavesLoopback.Error())
		if refused := guard.Refused(); len(refused) == 0 || !strings.Contains(refused[0], "login.microsoftonline.com:443") {
			t.Errorf("refused %v, want login.microsoftonline.com:443 first", refused)
		}
		if reached := wire.reached(); len(reached) != 0 {
			t.Errorf("the guard let through %v", reached)
		}
	})

	t.Run("adal managed identity with its built-in IMDS address", func(t *testing.T) {
		wire := &tripwire{}
		guard := NewGuard(wire.dial)
		client := &http.Client{Transport: NewTransport(guard, nil)}
		spt, err := adal.NewServicePrincipalTokenFromMSI("", armResource)
		if err != nil {
			t.Fatal(err)
		}
		// adal sleeps 2 s after a failed IMDS attempt even when it will not retry; the first
		// answer ends the refresh instead (its context is cancelled once the send has failed).
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var sendErr error
		spt.SetSender(adal.SenderFunc(func(req *http.Request) (*http.Response, error) {
			resp, err := client.Do(req)
			if err != nil && sendErr == nil {
				sendErr = err
				cancel()
			}
			return resp, err
		}))
		spt.MaxMSIRefreshAttempts = 1
		if err := spt.RefreshWithContext(ctx); err == nil {
			t.Fatal("adal got a token from nowhere")
		}
		if !errors.Is(sendErr, ErrLeavesLoopback) {
			t.Errorf("send error %v, want the guard's refusal", sendErr)
		}
		if refused := guard.Refused(); !slices.Equal(refused, []string{"tcp 169.254.169.254:80"}) {
			t.Errorf("refused %v, want exactly the metadata address", refused)
		}
		if reached := wire.reached(); len(reached) != 0 {
			t.Errorf("the guard let through %v", reached)
		}
	})
}
