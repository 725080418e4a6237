package conformance

// The test harness: starts the azure-emulator binary once for the package (TestMain) with the
// seed world on loopback, and gives every test a guarded HTTP client that trusts only the
// emulator's CA.

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The IDs of deploy/emulator/seed-world.yaml that these tests rely on.
const (
	tenantID       = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	subscriptionID = "6a1c4b1e-2f0d-4c5e-9a7b-3d2e1f0a9b8c"
	nodeRG         = "Study4Dev-JE-AKS-Study4Dev-JE-AKSResource"
	scaleSet       = "aks-agentpool-23456789-vmss"
	standaloneVM   = "aks-standalone-vm"

	spName     = "podid-seed-sp"
	spClientID = "1c2d3e4f-5a6b-4c7d-8e9f-a0b1c2d3e4f5"
	spSecret   = "seed-sp-secret.emulator-only~0123456789"

	kubeletName     = "aks-study4dev-je-agentpool"
	kubeletClientID = "5d0e8f3a-7c21-4b9e-a6d4-1f2e3c4b5a69"
	demoName        = "DEMO"
	demoClientID    = "cb5569f2-8d09-4de1-a007-e02058e11d15"
	demoPrincipalID = "2b3c4d5e-6f70-4182-9a3b-4c5d6e7f8091"

	armAudience = "https://management.azure.com"
	armResource = armAudience + "/"
	armScope    = armAudience + "/.default"
)

// Repository files, relative to this directory (go test runs in the package directory).
const (
	seedWorldFile = "../../deploy/emulator/seed-world.yaml"
	spCertFile    = "../python/fixtures/seed-sp-cert.pem"
	spKeyFile     = "../python/fixtures/seed-sp-key.pem"
)

func identityID(name string) string {
	return "/subscriptions/" + subscriptionID + "/resourceGroups/" + nodeRG +
		"/providers/Microsoft.ManagedIdentity/userAssignedIdentities/" + name
}

func nodeRGScope() string {
	return "/subscriptions/" + subscriptionID + "/resourceGroups/" + nodeRG
}

// scaleSetInstance is the machine name of a scale-set instance (its key in the endpoints file).
func scaleSetInstance(id int) string { return fmt.Sprintf("%s_%d", scaleSet, id) }

// Environment variables that would steer a credential to another endpoint, source, proxy or CA.
// TestMain removes them from this process (and so from the emulator's environment).
var redirectingEnvVars = []string{
	"IDENTITY_ENDPOINT", "IDENTITY_HEADER", "IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT",
	"MSI_ENDPOINT", "MSI_SECRET", "AZURE_POD_IDENTITY_AUTHORITY_HOST",
	"AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH",
	"AZURE_CLIENT_CERTIFICATE_PASSWORD", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_AUTHORITY_HOST",
	"AZURE_REGIONAL_AUTHORITY_NAME", "AZURE_USERNAME", "AZURE_PASSWORD",
	"SSL_CERT_FILE", "SSL_CERT_DIR",
	"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
	"http_proxy", "https_proxy", "all_proxy", "no_proxy",
}

// endpoints is the emulator's --endpoints-file.
type endpoints struct {
	ARM    string            `json:"arm"`
	Entra  string            `json:"entra"`
	Admin  string            `json:"admin"`
	IMDS   map[string]string `json:"imds"`
	CAFile string            `json:"caFile"`
}

// emulator is the running azure-emulator process and the clients' view of it.
type emulator struct {
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
	dir     string
	logFile string

	endpoints endpoints
	roots     *x509.CertPool
	guard     *Guard
	transport *http.Transport
	http      *http.Client
}

// emu is the emulator of this test run, started by TestMain.
var emu *emulator

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	for _, name := range redirectingEnvVars {
		os.Unsetenv(name)
	}
	// Belt and braces: anything that bypasses the tests' transports still cannot leave loopback.
	// The default transport is guarded and DNS lookups through Go's resolver are refused.
	processGuard := NewGuard(nil)
	http.DefaultTransport = NewTransport(processGuard, nil)
	net.DefaultResolver = &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			return nil, fmt.Errorf("%w: DNS query to %s", ErrLeavesLoopback, address)
		},
	}

	bin := os.Getenv("PODID_AZURE_EMULATOR_BIN")
	if bin == "" {
		fmt.Fprintln(os.Stderr, "PODID_AZURE_EMULATOR_BIN is not set: point it at the azure-emulator binary "+
			"(cargo build -p podid-emulator --bin azure-emulator; then PODID_AZURE_EMULATOR_BIN=<repo>/target/debug/azure-emulator)")
		return 2
	}
	e, err := startEmulator(bin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cannot start the azure emulator:", err)
		return 2
	}
	emu = e
	code := m.Run()
	e.stop()
	if refused := processGuard.Refused(); len(refused) > 0 {
		fmt.Fprintf(os.Stderr, "network hygiene: something used the default transport to leave loopback: %v\n", refused)
		code = 1
	}
	if code != 0 {
		// The directory (log, CA, endpoints) is kept for a look after a failure.
		fmt.Fprintf(os.Stderr, "--- azure-emulator log (%s), last lines ---\n%s\n", e.logFile, e.logTail(60))
	} else {
		os.RemoveAll(e.dir)
	}
	return code
}

func startEmulator(bin string) (*emulator, error) {
	bin, err := filepath.Abs(bin)
	if err != nil {
		return nil, err
	}
	if info, err := os.Stat(bin); err != nil || info.IsDir() {
		return nil, fmt.Errorf("PODID_AZURE_EMULATOR_BIN=%s is not a file", bin)
	}
	world, err := filepath.Abs(seedWorldFile)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "podid-go-conformance-")
	if err != nil {
		return nil, err
	}
	e := &emulator{exited: make(chan struct{}), dir: dir, logFile: filepath.Join(dir, "azure-emulator.log")}
	log, err := os.Create(e.logFile)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	caFile := filepath.Join(dir, "ca.pem")
	endpointsFile := filepath.Join(dir, "endpoints.json")
	e.cmd = exec.Command(bin, "--world", world, "--ca-file", caFile, "--endpoints-file", endpointsFile)
	e.cmd.Stdout = log
	e.cmd.Stderr = log
	e.cmd.Env = append(os.Environ(), "RUST_LOG=info")
	setParentDeathSignal(e.cmd)
	if err := e.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		e.waitErr = e.cmd.Wait()
		close(e.exited)
	}()

	// Readiness: the endpoints file appears once every listener is bound. It is polled, not
	// waited for with a fixed sleep; a half-written file is read again on the next tick.
	ready := time.NewTimer(60 * time.Second)
	defer ready.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		raw, err := os.ReadFile(endpointsFile)
		if err == nil && json.Unmarshal(raw, &e.endpoints) == nil && e.endpoints.Admin != "" {
			break
		}
		select {
		case <-e.exited:
			return nil, fmt.Errorf("azure-emulator exited (%v) before it was ready:\n%s", e.waitErr, e.logTail(40))
		case <-ready.C:
			e.stop()
			return nil, fmt.Errorf("azure-emulator wrote no endpoints file within 60 s:\n%s", e.logTail(40))
		case <-tick.C:
		}
	}

	pem, err := os.ReadFile(caFile)
	if err != nil {
		e.stop()
		return nil, err
	}
	e.roots = x509.NewCertPool()
	if !e.roots.AppendCertsFromPEM(pem) {
		e.stop()
		return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
	}
	for name, url := range map[string]string{"arm": e.endpoints.ARM, "entra": e.endpoints.Entra, "admin": e.endpoints.Admin} {
		if !strings.HasPrefix(url, "https://127.") && !strings.HasPrefix(url, "http://127.") {
			e.stop()
			return nil, fmt.Errorf("the emulator's %s endpoint %q is not on loopback", name, url)
		}
	}
	e.guard = NewGuard(nil)
	e.transport = NewTransport(e.guard, e.roots)
	e.http = &http.Client{Transport: e.transport, Timeout: 60 * time.Second}
	return e, nil
}

func (e *emulator) stop() {
	select {
	case <-e.exited:
		return
	default:
	}
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.exited:
	case <-time.After(10 * time.Second):
		_ = e.cmd.Process.Kill()
		<-e.exited
	}
	if e.transport != nil {
		e.transport.CloseIdleConnections()
	}
}

func (e *emulator) logTail(lines int) string {
	raw, err := os.ReadFile(e.logFile)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	all := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// imds is the IMDS base URL (http://127.0.0.1:P) of a machine of the world.
func (e *emulator) imds(t *testing.T, machine string) string {
	t.Helper()
	url, ok := e.endpoints.IMDS[machine]
	if !ok {
		t.Fatalf("no IMDS for machine %q; the world has %v", machine, e.endpoints.IMDS)
	}
	return url
}

// admin calls the emulator's admin API; out (if not nil) receives the decoded JSON answer.
func (e *emulator) admin(t *testing.T, method, path string, body, out any) {
	t.Helper()
	var reader io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		reader = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, e.endpoints.Admin+path, reader)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.http.Do(req)
	if err != nil {
		t.Fatalf("admin %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode/100 != 2 {
		t.Fatalf("admin %s %s: %s: %s", method, path, resp.Status, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("admin %s %s: %v in %s", method, path, err, raw)
		}
	}
}

type operationCount struct {
	Total    int            `json:"total"`
	ByStatus map[string]int `json:"byStatus"`
}

// count is how many requests the emulator answered as operation with status (0: any status).
func (e *emulator) count(t *testing.T, operation string, status int) int {
	t.Helper()
	var counters map[string]operationCount
	e.admin(t, http.MethodGet, "/admin/counters", nil, &counters)
	c := counters[operation]
	if status == 0 {
		return c.Total
	}
	return c.ByStatus[fmt.Sprint(status)]
}

type journalEntry struct {
	Method    string `json:"method"`
	Path      string `json:"path"`
	Query     string `json:"query"`
	Status    int    `json:"status"`
	Operation string `json:"operation"`
	Machine   string `json:"machine"`
	UserAgent string `json:"userAgent"`
}

func (e *emulator) journal(t *testing.T, surface string) []journalEntry {
	t.Helper()
	var entries []journalEntry
	e.admin(t, http.MethodGet, "/admin/journal?surface="+surface, nil, &entries)
	return entries
}

// begin starts a test on the world as loaded (POST /admin/reset) and fails it if any of its
// clients tried to leave loopback, even when the client swallowed the refusal.
func begin(t *testing.T) context.Context {
	t.Helper()
	emu.admin(t, http.MethodPost, "/admin/reset", nil, nil)
	before := len(emu.guard.Refused())
	t.Cleanup(func() {
		if refused := emu.guard.Refused()[before:]; len(refused) > 0 {
			t.Errorf("network hygiene: a client under test tried to leave loopback: %v", refused)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// claims decodes a JWT's payload (the signature is the emulator's business; other suites check it).
func claims(t *testing.T, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %d parts", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("JWT payload: %v", err)
	}
	var c map[string]any
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatalf("JWT payload: %v", err)
	}
	return c
}

// claim is a string claim, failing the test when it is absent or not a string.
func claim(t *testing.T, c map[string]any, name string) string {
	t.Helper()
	v, ok := c[name].(string)
	if !ok {
		t.Fatalf("claim %q is %v (%T), want a string", name, c[name], c[name])
	}
	return v
}

func wantClaims(t *testing.T, jwt string, want map[string]string) map[string]any {
	t.Helper()
	c := claims(t, jwt)
	for name, value := range want {
		if got := claim(t, c, name); !strings.EqualFold(got, value) {
			t.Errorf("claim %s = %q, want %q", name, got, value)
		}
	}
	return c
}

// wantSeedSPClaims checks that jwt is the seed service principal's token for audience from the
// emulator's tenant, signed in with a secret (appidacr "1") or a certificate ("2").
func wantSeedSPClaims(t *testing.T, jwt, audience, appidacr string) {
	t.Helper()
	wantClaims(t, jwt, map[string]string{
		"aud":      audience,
		"appid":    spClientID,
		"appidacr": appidacr,
		"tid":      tenantID,
		"iss":      "https://sts.windows.net/" + tenantID + "/",
	})
}

// errorContains fails unless err is not nil and its text contains every fragment.
func errorContains(t *testing.T, err error, fragments ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", fragments)
	}
	for _, f := range fragments {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error does not contain %q:\n%v", f, err)
		}
	}
}
