// Command podtoken gets a token with azidentity's ManagedIdentityCredential and its default
// settings, as an application in a pod would: no endpoint is configured, so the SDK calls
// 169.254.169.254. The node lab's tests (tests/node/test_sdks.py) run it inside a lab pod's
// network namespace only; it is never run on the machine's own network.
//
//	podtoken CLIENT_ID RESOURCE   (CLIENT_ID may be empty: the pod's only identity)
//
// Prints {"token": "…"} or {"error": "…"} as JSON on stdout.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: podtoken CLIENT_ID RESOURCE")
		os.Exit(2)
	}
	options := &azidentity.ManagedIdentityCredentialOptions{}
	if os.Args[1] != "" {
		options.ID = azidentity.ClientID(os.Args[1])
	}
	answer := map[string]string{}
	credential, err := azidentity.NewManagedIdentityCredential(options)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		var token azcore.AccessToken
		token, err = credential.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{os.Args[2] + "/.default"}})
		if err == nil {
			answer["token"] = token.Token
		}
	}
	if err != nil {
		answer["error"] = err.Error()
	}
	if err := json.NewEncoder(os.Stdout).Encode(answer); err != nil {
		os.Exit(1)
	}
}
