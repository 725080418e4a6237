package conformance

// armcompute against the emulator's ARM: the scale-set identity PATCH that pod identity lives on
// (add with {}, remove with null), its long-running operation polled to the end, the final GET,
// what IMDS serves afterwards, and ARM errors as the SDK reports them.

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/go-autorest/autorest/adal"
)

// grant gives the seed service principal a role on the node resource group (the seed world lets
// it only read there).
func grant(t *testing.T, roles ...string) {
	t.Helper()
	for _, role := range roles {
		emu.admin(t, http.MethodPost, "/admin/arm/role-assignments",
			map[string]string{"principal": spName, "role": role, "scope": nodeRGScope()}, nil)
	}
}

func scaleSetsClient(t *testing.T, cred azcore.TokenCredential) *armcompute.VirtualMachineScaleSetsClient {
	t.Helper()
	client, err := armcompute.NewVirtualMachineScaleSetsClient(subscriptionID, cred,
		&arm.ClientOptions{ClientOptions: emulatorClientOptions()})
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// userIdentities is a scale-set PATCH body of type UserAssigned: a non-nil value adds the
// identity, nil removes it (the SDK sends JSON null).
func userIdentities(changes map[string]*armcompute.UserAssignedIdentitiesValue) armcompute.VirtualMachineScaleSetUpdate {
	return armcompute.VirtualMachineScaleSetUpdate{
		Identity: &armcompute.VirtualMachineScaleSetIdentity{
			Type:                   to.Ptr(armcompute.ResourceIdentityTypeUserAssigned),
			UserAssignedIdentities: changes,
		},
	}
}

// assigned lists the user-assigned identity IDs of a scale set, lower-cased and sorted (ARM
// compares them ignoring case).
func assigned(identity *armcompute.VirtualMachineScaleSetIdentity) []string {
	ids := []string{}
	if identity != nil {
		for id := range identity.UserAssignedIdentities {
			ids = append(ids, strings.ToLower(id))
		}
	}
	sort.Strings(ids)
	return ids
}

func lowerSorted(ids ...string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = strings.ToLower(id)
	}
	sort.Strings(out)
	return out
}

func wantAssigned(t *testing.T, what string, identity *armcompute.VirtualMachineScaleSetIdentity, ids ...string) {
	t.Helper()
	got, want := assigned(identity), lowerSorted(ids...)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("%s: user-assigned identities %v, want %v", what, got, want)
	}
}

// update runs one identity PATCH through the SDK's long-running-operation poller. The emulator
// completes the operation on its own clock, which the test moves forward through the admin API
// (no waiting for wall time); the poller then finds it done and makes the final GET.
func update(ctx context.Context, t *testing.T, client *armcompute.VirtualMachineScaleSetsClient,
	body armcompute.VirtualMachineScaleSetUpdate) armcompute.VirtualMachineScaleSetsClientUpdateResponse {
	t.Helper()
	pollsBefore := emu.count(t, "arm.operation.get", http.StatusOK)
	poller, err := client.BeginUpdate(ctx, nodeRG, scaleSet, body, nil)
	if err != nil {
		t.Fatalf("BeginUpdate: %v", err)
	}
	if poller.Done() {
		t.Fatal("the PATCH answer already ended the operation; want Updating and a status URL to poll")
	}
	emu.admin(t, http.MethodPost, "/admin/clock", map[string]int{"advanceSeconds": 1}, nil)
	result, err := poller.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("PollUntilDone: %v", err)
	}
	if n := emu.count(t, "arm.operation.get", http.StatusOK) - pollsBefore; n < 1 {
		t.Error("the SDK never polled the operation")
	}
	if state := deref(result.Properties, armcompute.VirtualMachineScaleSetProperties{}).ProvisioningState; state == nil || *state != "Succeeded" {
		t.Errorf("provisioning state after the operation: %v, want Succeeded", state)
	}
	return result
}

func TestArmcomputeScaleSetIdentityAddPollGetRemove(t *testing.T) {
	ctx := begin(t)
	grant(t, "Virtual Machine Contributor", "Managed Identity Operator")
	client := scaleSetsClient(t, secretCredential(t, spSecret))
	kubelet, demo := identityID(kubeletName), identityID(demoName)

	before, err := client.Get(ctx, nodeRG, scaleSet, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := deref(before.Name, ""); got != scaleSet {
		t.Errorf("name %q, want %q", got, scaleSet)
	}
	if before.Identity == nil || deref(before.Identity.Type, "") != armcompute.ResourceIdentityTypeUserAssigned {
		t.Fatalf("identity %+v, want type UserAssigned", before.Identity)
	}
	wantAssigned(t, "before", before.Identity, kubelet)
	// The node does not serve DEMO yet.
	_, err = imdsToken(t, scaleSetInstance(1), demoClientID)
	wantRefreshError(t, err, http.StatusBadRequest, "Identity not found")

	added := update(ctx, t, client, userIdentities(map[string]*armcompute.UserAssignedIdentitiesValue{demo: {}}))
	wantAssigned(t, "the operation's result", added.Identity, kubelet, demo)
	for id, value := range added.Identity.UserAssignedIdentities {
		if strings.EqualFold(id, demo) {
			if deref(value.ClientID, "") != demoClientID || deref(value.PrincipalID, "") != demoPrincipalID {
				t.Errorf("DEMO shows clientId %v principalId %v", deref(value.ClientID, ""), deref(value.PrincipalID, ""))
			}
		}
	}
	afterAdd, err := client.Get(ctx, nodeRG, scaleSet, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantAssigned(t, "GET after adding", afterAdd.Identity, kubelet, demo)

	// What NMI would now get for a pod bound to DEMO on any node of the scale set.
	token, err := imdsToken(t, scaleSetInstance(1), demoClientID)
	if err != nil {
		t.Fatal(err)
	}
	wantClaims(t, token.AccessToken, map[string]string{"appid": demoClientID, "xms_mirid": demo})

	removed := update(ctx, t, client, userIdentities(map[string]*armcompute.UserAssignedIdentitiesValue{demo: nil}))
	wantAssigned(t, "the removal's result", removed.Identity, kubelet)
	afterRemove, err := client.Get(ctx, nodeRG, scaleSet, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantAssigned(t, "GET after removing", afterRemove.Identity, kubelet)
	_, err = imdsToken(t, scaleSetInstance(1), demoClientID)
	wantRefreshError(t, err, http.StatusBadRequest, "Identity not found")

	// The requests came from the real SDK, through the path the emulator documents.
	var patches int
	for _, entry := range emu.journal(t, "arm") {
		if entry.Operation == "arm.vmss.patch" {
			patches++
			if !strings.Contains(entry.UserAgent, "azsdk-go-armcompute") {
				t.Errorf("PATCH user agent %q is not armcompute's", entry.UserAgent)
			}
		}
	}
	if patches != 2 {
		t.Errorf("%d scale-set PATCHes, want 2", patches)
	}
}

func TestArmcomputeSendsNullToRemoveAnIdentity(t *testing.T) {
	demo := identityID(demoName)
	raw, err := json.Marshal(userIdentities(map[string]*armcompute.UserAssignedIdentitiesValue{demo: nil}))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"identity":{"type":"UserAssigned","userAssignedIdentities":{"` + demo + `":null}}}`
	if string(raw) != want {
		t.Errorf("body %s\nwant %s", raw, want)
	}
}

// wantResponseError fails unless err is azcore's ResponseError with this status and ARM code.
func wantResponseError(t *testing.T, err error, status int, code string) *azcore.ResponseError {
	t.Helper()
	var respErr *azcore.ResponseError
	if !errors.As(err, &respErr) {
		t.Fatalf("error %v (%T), want *azcore.ResponseError", err, err)
	}
	if respErr.StatusCode != status || respErr.ErrorCode != code {
		t.Errorf("got %d %s, want %d %s:\n%v", respErr.StatusCode, respErr.ErrorCode, status, code, err)
	}
	return respErr
}

func TestArmcomputeErrorsReachTheCaller(t *testing.T) {
	demo := identityID(demoName)
	addDemo := userIdentities(map[string]*armcompute.UserAssignedIdentitiesValue{demo: {}})

	t.Run("no write permission", func(t *testing.T) {
		ctx := begin(t)
		_, err := scaleSetsClient(t, secretCredential(t, spSecret)).BeginUpdate(ctx, nodeRG, scaleSet, addDemo, nil)
		wantResponseError(t, err, http.StatusForbidden, "AuthorizationFailed")
	})

	t.Run("may write the scale set but not assign the identity", func(t *testing.T) {
		ctx := begin(t)
		grant(t, "Virtual Machine Contributor")
		_, err := scaleSetsClient(t, secretCredential(t, spSecret)).BeginUpdate(ctx, nodeRG, scaleSet, addDemo, nil)
		respErr := wantResponseError(t, err, http.StatusForbidden, "LinkedAuthorizationFailed")
		errorContains(t, respErr, "'"+demo+"'")
	})

	t.Run("an identity that does not exist", func(t *testing.T) {
		ctx := begin(t)
		grant(t, "Virtual Machine Contributor", "Managed Identity Operator")
		missing := identityID("no-such-identity")
		_, err := scaleSetsClient(t, secretCredential(t, spSecret)).BeginUpdate(ctx, nodeRG, scaleSet,
			userIdentities(map[string]*armcompute.UserAssignedIdentitiesValue{missing: {}}), nil)
		wantResponseError(t, err, http.StatusBadRequest, "FailedIdentityOperation")
	})

	t.Run("a scale set that does not exist", func(t *testing.T) {
		ctx := begin(t)
		_, err := scaleSetsClient(t, secretCredential(t, spSecret)).Get(ctx, nodeRG, "no-such-vmss", nil)
		wantResponseError(t, err, http.StatusNotFound, "ResourceNotFound")
	})
}

// adalCredential lets an azcore client use a token adal got, the way MIC signs in to ARM with the
// node's kubelet identity from IMDS.
type adalCredential struct{ spt *adal.ServicePrincipalToken }

func (c adalCredential) GetToken(ctx context.Context, _ policy.TokenRequestOptions) (azcore.AccessToken, error) {
	if err := c.spt.EnsureFreshWithContext(ctx); err != nil {
		return azcore.AccessToken{}, err
	}
	token := c.spt.Token()
	return azcore.AccessToken{Token: token.AccessToken, ExpiresOn: token.Expires()}, nil
}

func TestArmcomputeWithTheKubeletIdentityFromIMDS(t *testing.T) {
	ctx := begin(t)
	spt, err := adal.NewServicePrincipalTokenFromMSIWithUserAssignedID(msiEndpoint(t, scaleSetInstance(0)), armResource, kubeletClientID)
	if err != nil {
		t.Fatal(err)
	}
	spt.SetSender(emu.http)
	spt.MaxMSIRefreshAttempts = 1
	client := scaleSetsClient(t, adalCredential{spt})

	got, err := client.Get(ctx, nodeRG, scaleSet, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantAssigned(t, "GET as the kubelet identity", got.Identity, identityID(kubeletName))
	// The kubelet identity holds Virtual Machine Contributor and Managed Identity Operator in the
	// seed world: exactly what assigning DEMO to its own scale set needs.
	added := update(ctx, t, client, userIdentities(map[string]*armcompute.UserAssignedIdentitiesValue{identityID(demoName): {}}))
	wantAssigned(t, "assigned by the kubelet identity", added.Identity, identityID(kubeletName), identityID(demoName))
	if n := emu.count(t, "imds.token", http.StatusOK); n != 1 {
		t.Errorf("IMDS served %d tokens, want 1 (adal reuses its token)", n)
	}
}

// deref is *p, or fallback when p is nil.
func deref[T any](p *T, fallback T) T {
	if p == nil {
		return fallback
	}
	return *p
}
