package e2e

import (
	"fmt"
	"net/http"
	"strconv"
	"testing"
)

// TestInstancesCountLimitsOnce: two instances on one PostgreSQL enforce
// one bound on what an address leaves behind, not one each. With
// registration open { per_address 10 }, twenty registrations from one
// address, alternating between the instances, admit exactly ten; a
// restarted instance still counts them; and a client that obtains a grant
// at one instance frees its place at the other.
func TestInstancesCountLimitsOnce(t *testing.T) {
	c := newCluster(t)
	limits := "registration open {\n\t\t\tper_address 10\n\t\t}"
	a, b := c.configure("A", limits), c.configure("B", limits)
	a.start()
	b.start()
	t.Cleanup(a.stop)
	t.Cleanup(b.stop)
	envs := []*env{a.env(), b.env()}
	register := func(i int) (int, http.Header, map[string]any) {
		body := fmt.Sprintf(`{"client_name":"hosted %d","redirect_uris":["https://app.example/cb"],"token_endpoint_auth_method":"client_secret_basic"}`, i)
		return envs[i%2].postRegister(t, body)
	}
	accepted := 0
	var first map[string]any
	for i := range 20 {
		status, header, out := register(i)
		switch status {
		case http.StatusCreated:
			accepted++
			if first == nil {
				first = out
			}
		case http.StatusTooManyRequests:
			if s, err := strconv.Atoi(header.Get("Retry-After")); err != nil || s < 1 {
				t.Errorf("429 without a Retry-After: %q", header.Get("Retry-After"))
			}
		default:
			t.Fatalf("registration %d: %d %v", i, status, out)
		}
	}
	if accepted != 10 {
		t.Fatalf("two instances admitted %d unused clients from one address, want the bound of 10 once", accepted)
	}

	a.stop() // a restart forgets nothing: the ledger is in the database
	a.start()
	if status, _, _ := register(0); status != http.StatusTooManyRequests {
		t.Errorf("after A restarted: %d, want 429", status)
	}

	// The first client signs in through B: its place is free again, at A.
	cl := &oauthClient{e: envs[1], http: envs[1].httpClient(nil), id: first["client_id"].(string),
		secret: first["client_secret"].(string), redirect: "https://app.example/cb"}
	cl.login(t, envs[1].browser("alice"), c.site+"/mcp")
	if status, _, out := register(0); status != http.StatusCreated {
		t.Errorf("after a client obtained a grant: %d %v, want 201", status, out)
	}
}
