package conformance

// azidentity (MSAL for Go underneath) against the emulator's Entra ID: a custom cloud whose
// authority host is the emulator, instance discovery disabled, the emulator's CA as the only
// trust root.

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// emulatorCloud names the emulator for every Azure service these tests use; nothing is left to
// a default that points at a real Azure host.
func emulatorCloud() cloud.Configuration {
	return cloud.Configuration{
		ActiveDirectoryAuthorityHost: emu.endpoints.Entra + "/",
		Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
			cloud.ResourceManager: {Audience: armAudience, Endpoint: emu.endpoints.ARM},
		},
	}
}

func emulatorClientOptions() azcore.ClientOptions {
	return azcore.ClientOptions{Cloud: emulatorCloud(), Transport: emu.http}
}

func secretCredential(t *testing.T, secret string) *azidentity.ClientSecretCredential {
	t.Helper()
	cred, err := azidentity.NewClientSecretCredential(tenantID, spClientID, secret,
		&azidentity.ClientSecretCredentialOptions{
			ClientOptions:            emulatorClientOptions(),
			DisableInstanceDiscovery: true,
		})
	if err != nil {
		t.Fatal(err)
	}
	return cred
}

func spCertificatePEM(t *testing.T) []byte {
	t.Helper()
	cert, err := os.ReadFile(spCertFile)
	if err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile(spKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return append(append(cert, '\n'), key...)
}

var armTokenRequest = policy.TokenRequestOptions{Scopes: []string{armScope}}

// armToken gets an ARM token from cred and checks that it is the seed service principal's,
// signed in with a secret (appidacr "1") or a certificate ("2").
func armToken(ctx context.Context, t *testing.T, cred azcore.TokenCredential, appidacr string) azcore.AccessToken {
	t.Helper()
	token, err := cred.GetToken(ctx, armTokenRequest)
	if err != nil {
		t.Fatal(err)
	}
	wantSeedSPClaims(t, token.Token, armAudience, appidacr)
	return token
}

func TestAzidentityClientSecretCredentialGetsAnARMToken(t *testing.T) {
	ctx := begin(t)
	cred := secretCredential(t, spSecret)

	token := armToken(ctx, t, cred, "1")
	if !token.ExpiresOn.After(time.Now().Add(30 * time.Minute)) {
		t.Errorf("token expires at %v, want about an hour from now", token.ExpiresOn)
	}

	// The second call is answered from MSAL's cache: it understood the v2 body's lifetime.
	again, err := cred.GetToken(ctx, armTokenRequest)
	if err != nil {
		t.Fatal(err)
	}
	if again.Token != token.Token {
		t.Error("the second GetToken did not come from the cache")
	}
	if n := emu.count(t, "entra.token.v2", 200); n != 1 {
		t.Errorf("entra.token.v2 answered 200 %d times, want 1", n)
	}
	if n := emu.count(t, "entra.instance_discovery", 0); n != 0 {
		t.Errorf("instance discovery was called %d times with DisableInstanceDiscovery", n)
	}
	if n := emu.count(t, "entra.openid_configuration", 200); n < 1 {
		t.Error("MSAL never read the emulator's OpenID configuration")
	}
}

func TestAzidentityClientSecretCredentialWrongSecret(t *testing.T) {
	ctx := begin(t)
	_, err := secretCredential(t, "not-the-secret").GetToken(ctx, armTokenRequest)
	errorContains(t, err, "AADSTS7000215")
	var failed *azidentity.AuthenticationFailedError
	if !errors.As(err, &failed) {
		t.Fatalf("error is %T, want *azidentity.AuthenticationFailedError", err)
	}
	if failed.RawResponse == nil || failed.RawResponse.StatusCode != http.StatusUnauthorized {
		t.Errorf("raw response %v, want 401", failed.RawResponse)
	}
}

func TestAzidentityClientCertificateCredential(t *testing.T) {
	for _, sendChain := range []bool{false, true} {
		name := "x5t only"
		if sendChain {
			name = "with x5c chain"
		}
		t.Run(name, func(t *testing.T) {
			ctx := begin(t)
			certs, key, err := azidentity.ParseCertificates(spCertificatePEM(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			cred, err := azidentity.NewClientCertificateCredential(tenantID, spClientID, certs, key,
				&azidentity.ClientCertificateCredentialOptions{
					ClientOptions:            emulatorClientOptions(),
					DisableInstanceDiscovery: true,
					SendCertificateChain:     sendChain,
				})
			if err != nil {
				t.Fatal(err)
			}
			armToken(ctx, t, cred, "2")
		})
	}
}

func TestAzidentityCertificateCredentialWithAnUnregisteredCertificate(t *testing.T) {
	ctx := begin(t)
	cert, key := selfSignedCertificate(t)
	cred, err := azidentity.NewClientCertificateCredential(tenantID, spClientID, []*x509.Certificate{cert}, key,
		&azidentity.ClientCertificateCredentialOptions{
			ClientOptions:            emulatorClientOptions(),
			DisableInstanceDiscovery: true,
		})
	if err != nil {
		t.Fatal(err)
	}
	_, err = cred.GetToken(ctx, armTokenRequest)
	errorContains(t, err, "AADSTS700027")
}

// selfSignedCertificate is a fresh certificate and key that no service principal registered.
func selfSignedCertificate(t *testing.T) (*x509.Certificate, *rsa.PrivateKey) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	template := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "not registered anywhere"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}
