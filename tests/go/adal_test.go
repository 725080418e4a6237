package conformance

// go-autorest adal, the token library of upstream aad-pod-identity's MIC and NMI: a service
// principal on the v1 endpoint (secret and certificate) and managed identities from a machine's
// IMDS listener, named explicitly (adal's built-in address is the real metadata endpoint).

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/Azure/go-autorest/autorest/adal"
)

func emulatorOAuthConfig(t *testing.T) *adal.OAuthConfig {
	t.Helper()
	cfg, err := adal.NewOAuthConfig(emu.endpoints.Entra+"/", tenantID)
	if err != nil {
		t.Fatal(err)
	}
	want := emu.endpoints.Entra + "/" + tenantID + "/oauth2/token?api-version=1.0"
	if got := cfg.TokenEndpoint.String(); got != want {
		t.Fatalf("adal's token endpoint is %s, want %s", got, want)
	}
	return cfg
}

// msiEndpoint is the IMDS token URL of a machine of the world.
func msiEndpoint(t *testing.T, machine string) string {
	return emu.imds(t, machine) + "/metadata/identity/oauth2/token"
}

// refresh asks for a token through the tests' guarded transport. MSI tokens get one attempt:
// adal retries only statuses these tests do not expect, and would sleep between attempts.
func refresh(t *testing.T, spt *adal.ServicePrincipalToken) (adal.Token, error) {
	t.Helper()
	spt.SetSender(emu.http)
	spt.MaxMSIRefreshAttempts = 1
	if err := spt.RefreshWithContext(t.Context()); err != nil {
		return adal.Token{}, err
	}
	return spt.Token(), nil
}

// imdsToken is a managed-identity token for the user-assigned identity clientID, asked for the
// way NMI asks (adal, user-assigned ID, explicit endpoint).
func imdsToken(t *testing.T, machine, clientID string) (adal.Token, error) {
	t.Helper()
	spt, err := adal.NewServicePrincipalTokenFromMSIWithUserAssignedID(msiEndpoint(t, machine), armResource, clientID)
	if err != nil {
		t.Fatal(err)
	}
	return refresh(t, spt)
}

// wantRefreshError fails unless err is adal's TokenRefreshError with status and text.
func wantRefreshError(t *testing.T, err error, status int, text string) {
	t.Helper()
	var refreshErr adal.TokenRefreshError
	if !errors.As(err, &refreshErr) {
		t.Fatalf("error %v (%T), want adal.TokenRefreshError", err, err)
	}
	if got := refreshErr.Response().StatusCode; got != status {
		t.Errorf("status %d, want %d", got, status)
	}
	errorContains(t, err, text)
}

// wantFreshToken checks what adal parsed from the answer against the JWT itself.
func wantFreshToken(t *testing.T, token adal.Token) map[string]any {
	t.Helper()
	c := claims(t, token.AccessToken)
	if token.Type != "Bearer" {
		t.Errorf("token_type %q, want Bearer", token.Type)
	}
	if token.Resource != armResource {
		t.Errorf("resource %q, want %q", token.Resource, armResource)
	}
	exp, _ := c["exp"].(float64)
	if got := token.Expires().Unix(); got != int64(exp) {
		t.Errorf("expires_on %d, the JWT's exp %d", got, int64(exp))
	}
	if token.IsExpired() || token.WillExpireIn(30*time.Minute) {
		t.Errorf("token expires at %v, want well in the future", token.Expires())
	}
	return c
}

// freshToken fails unless adal made spt (err is its constructor's) and refreshes it into a token
// wantFreshToken accepts; it returns the token and its claims.
func freshToken(t *testing.T, spt *adal.ServicePrincipalToken, err error) (adal.Token, map[string]any) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	token, err := refresh(t, spt)
	if err != nil {
		t.Fatal(err)
	}
	return token, wantFreshToken(t, token)
}

func TestAdalServicePrincipalSecretOnTheV1Endpoint(t *testing.T) {
	begin(t)
	spt, err := adal.NewServicePrincipalToken(*emulatorOAuthConfig(t), spClientID, spSecret, armResource)
	token, _ := freshToken(t, spt, err)
	wantSeedSPClaims(t, token.AccessToken, armResource, "1")
	if n := emu.count(t, "entra.token.v1", 200); n != 1 {
		t.Errorf("entra.token.v1 answered 200 %d times, want 1", n)
	}
}

func TestAdalServicePrincipalWrongSecret(t *testing.T) {
	begin(t)
	spt, err := adal.NewServicePrincipalToken(*emulatorOAuthConfig(t), spClientID, "not-the-secret", armResource)
	if err != nil {
		t.Fatal(err)
	}
	_, err = refresh(t, spt)
	wantRefreshError(t, err, http.StatusUnauthorized, "AADSTS7000215")
}

func TestAdalServicePrincipalCertificateOnTheV1Endpoint(t *testing.T) {
	begin(t)
	cert, key := spCertificateAndKey(t)
	spt, err := adal.NewServicePrincipalTokenFromCertificate(*emulatorOAuthConfig(t), spClientID, cert, key, armResource)
	token, _ := freshToken(t, spt, err)
	wantSeedSPClaims(t, token.AccessToken, armResource, "2")
}

func TestAdalManagedIdentityFromIMDS(t *testing.T) {
	begin(t)
	kubelet := identityID(kubeletName)

	t.Run("user-assigned by client ID", func(t *testing.T) {
		token, err := imdsToken(t, scaleSetInstance(0), kubeletClientID)
		if err != nil {
			t.Fatal(err)
		}
		c := wantFreshToken(t, token)
		wantClaims(t, token.AccessToken, map[string]string{
			"appid": kubeletClientID, "aud": armResource, "tid": tenantID, "xms_mirid": kubelet,
		})
		// The requesting compute resource: the scale set (or its instance).
		if rid := claim(t, c, "xms_az_rid"); !strings.Contains(strings.ToLower(rid)+"/", "/resourcegroups/"+strings.ToLower(nodeRG)+"/providers/microsoft.compute/virtualmachinescalesets/"+scaleSet+"/") {
			t.Errorf("xms_az_rid %q does not name the scale set", rid)
		}
	})

	t.Run("user-assigned by resource ID", func(t *testing.T) {
		spt, err := adal.NewServicePrincipalTokenFromMSIWithIdentityResourceID(msiEndpoint(t, scaleSetInstance(2)), armResource, kubelet)
		token, _ := freshToken(t, spt, err)
		wantClaims(t, token.AccessToken, map[string]string{"appid": kubeletClientID, "xms_mirid": kubelet})
		if !journalHasQuery(t, "imds", "mi_res_id=") {
			t.Error("adal did not select the identity with mi_res_id")
		}
	})

	t.Run("system-assigned without a selector", func(t *testing.T) {
		spt, err := adal.NewServicePrincipalTokenFromMSI(msiEndpoint(t, standaloneVM), armResource)
		_, c := freshToken(t, spt, err)
		if mirid := claim(t, c, "xms_mirid"); !strings.HasSuffix(strings.ToLower(mirid), "/virtualmachines/"+standaloneVM) {
			t.Errorf("xms_mirid %q is not the VM's system-assigned identity", mirid)
		}
	})

	t.Run("an identity the machine does not have", func(t *testing.T) {
		before := emu.count(t, "imds.token", http.StatusBadRequest)
		_, err := imdsToken(t, scaleSetInstance(1), demoClientID)
		wantRefreshError(t, err, http.StatusBadRequest, "Identity not found")
		if n := emu.count(t, "imds.token", http.StatusBadRequest) - before; n != 1 {
			t.Errorf("IMDS answered %d requests with 400, want exactly 1 (no retry)", n)
		}
	})
}

func journalHasQuery(t *testing.T, surface, fragment string) bool {
	t.Helper()
	for _, entry := range emu.journal(t, surface) {
		if strings.Contains(entry.Query, fragment) {
			return true
		}
	}
	return false
}

func spCertificateAndKey(t *testing.T) (*x509.Certificate, *rsa.PrivateKey) {
	t.Helper()
	certBlock := readPEM(t, spCertFile, "CERTIFICATE")
	cert, err := x509.ParseCertificate(certBlock.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	keyBlock := readPEM(t, spKeyFile, "PRIVATE KEY")
	parsed, err := x509.ParsePKCS8PrivateKey(keyBlock.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	key, ok := parsed.(*rsa.PrivateKey)
	if !ok {
		t.Fatalf("%s holds a %T, want an RSA key", spKeyFile, parsed)
	}
	return cert, key
}

func readPEM(t *testing.T, file, blockType string) *pem.Block {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(raw)
	if block == nil || block.Type != blockType {
		t.Fatalf("%s: no %s PEM block", file, blockType)
	}
	return block
}
