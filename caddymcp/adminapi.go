package caddymcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddymcp/caddymcp/caddymcp/oauth"
	"github.com/caddymcp/caddymcp/caddymcp/store"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// AdminAPI serves mcp_auth's routes on Caddy's admin endpoint, for the
// `caddy mcp-auth` commands and for operators' scripts:
//
//	GET    /mcp_auth/stores                 the state files of the running config
//	GET    /mcp_auth/clients[?after=&limit=]
//	DELETE /mcp_auth/clients/<id>           deletes a client and revokes its grants
//	GET    /mcp_auth/grants[?user=&user_id=&client=&after=&limit=]
//	DELETE /mcp_auth/grants/<id>            revokes a grant and its tokens
//	POST   /mcp_auth/revoke                 {"user": "login"} or {"user_id": 1} or {"client_id": "..."}:
//	                                        revokes every grant of that user (and/or client)
//
// When the config has several state files, every route but stores takes
// ?store=<path> to pick one. Lists are paged: a response has "next" when
// there may be more, to pass as ?after=. limit defaults to 100, at most
// 1000.
//
// It never opens a state file itself: it works on the files the running
// config has open, so it is safe while the server runs (and the only way
// to change its state then).
type AdminAPI struct {
	audit *zap.Logger
	// stores lists the state files to work on; the running ones by
	// default, a fixed set in tests.
	stores func() []namedStore
	now    func() time.Time
}

// namedStore is a state file and its path.
type namedStore struct {
	path string
	st   store.Store
}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.mcp_auth",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Provision sets up the routes' logger.
func (a *AdminAPI) Provision(ctx caddy.Context) error {
	a.audit = ctx.Logger(a).Named("audit")
	a.stores = runningStores
	a.now = time.Now
	return nil
}

// Routes returns the routes under /mcp_auth/.
func (a *AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: adminPrefix, Handler: caddy.AdminHandlerFunc(a.serve)}}
}

const adminPrefix = "/mcp_auth/"

// maxAdminBody bounds the body of a POST.
const maxAdminBody = 64 << 10

// adminRoutes maps a collection, with or without an ID after it, to its
// method and handler.
var adminRoutes = []struct {
	collection string
	withID     bool
	method     string
	serve      func(a *AdminAPI, w http.ResponseWriter, r *http.Request, id string) error
}{
	{"stores", false, http.MethodGet, (*AdminAPI).listStores},
	{"clients", false, http.MethodGet, (*AdminAPI).listClients},
	{"clients", true, http.MethodDelete, (*AdminAPI).deleteClient},
	{"grants", false, http.MethodGet, (*AdminAPI).listGrants},
	{"grants", true, http.MethodDelete, (*AdminAPI).revokeGrant},
	{"revoke", false, http.MethodPost, (*AdminAPI).revokeGrants},
}

func (a *AdminAPI) serve(w http.ResponseWriter, r *http.Request) error {
	collection, id, withID := strings.Cut(strings.TrimPrefix(r.URL.Path, adminPrefix), "/")
	for _, route := range adminRoutes {
		if route.collection != collection || route.withID != withID || (withID && id == "") {
			continue
		}
		if r.Method != route.method {
			return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed; use %s", r.Method, route.method)}
		}
		return route.serve(a, w, r, id)
	}
	return apiError(http.StatusNotFound, "no such mcp_auth admin route: %s", r.URL.Path)
}

func apiError(status int, format string, args ...any) error {
	return caddy.APIError{HTTPStatus: status, Err: fmt.Errorf(format, args...)}
}

// --- views -----------------------------------------------------------------

// clientView is a client as the admin API shows it: no secret digest.
type clientView struct {
	ID                      string    `json:"id"`
	Name                    string    `json:"name,omitempty"`
	RedirectURIs            []string  `json:"redirect_uris"`
	TokenEndpointAuthMethod string    `json:"token_endpoint_auth_method"`
	ClientURI               string    `json:"client_uri,omitempty"`
	SoftwareID              string    `json:"software_id,omitempty"`
	SoftwareVersion         string    `json:"software_version,omitempty"`
	CreatedAt               time.Time `json:"created_at"`
}

func viewClient(c *store.Client) clientView {
	return clientView{ID: c.ID, Name: c.Name, RedirectURIs: c.RedirectURIs, TokenEndpointAuthMethod: c.TokenEndpointAuthMethod,
		ClientURI: c.ClientURI, SoftwareID: c.SoftwareID, SoftwareVersion: c.SoftwareVersion, CreatedAt: c.CreatedAt}
}

// grantView is a grant as the admin API shows it: no sealed GitHub token.
type grantView struct {
	ID         string    `json:"id"`
	ClientID   string    `json:"client_id"`
	ClientName string    `json:"client_name,omitempty"`
	User       userView  `json:"user"`
	Scope      string    `json:"scope,omitempty"`
	Resource   string    `json:"resource,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	ExpiresAt  time.Time `json:"expires_at"`
}

type userView struct {
	ID    int64  `json:"id"`
	Login string `json:"login"`
	Name  string `json:"name,omitempty"`
}

// --- handlers --------------------------------------------------------------

func (a *AdminAPI) listStores(w http.ResponseWriter, _ *http.Request, _ string) error {
	type storeView struct {
		Path string `json:"path"`
	}
	views := []storeView{}
	for _, s := range a.stores() {
		views = append(views, storeView{Path: s.path})
	}
	return writeAdminJSON(w, http.StatusOK, map[string]any{"stores": views})
}

func (a *AdminAPI) listClients(w http.ResponseWriter, r *http.Request, _ string) error {
	q, ns, err := a.target(r, "after", "limit")
	if err != nil {
		return err
	}
	after, limit, err := page(q)
	if err != nil {
		return err
	}
	clients, err := ns.st.ListClients(r.Context(), after, limit)
	if err != nil {
		return storeError(err)
	}
	views := make([]clientView, 0, len(clients))
	for _, c := range clients {
		views = append(views, viewClient(c))
	}
	out := map[string]any{"store": ns.path, "clients": views}
	if len(clients) == limit {
		out["next"] = clients[len(clients)-1].ID
	}
	return writeAdminJSON(w, http.StatusOK, out)
}

func (a *AdminAPI) listGrants(w http.ResponseWriter, r *http.Request, _ string) error {
	q, ns, err := a.target(r, "after", "limit", "user", "user_id", "client")
	if err != nil {
		return err
	}
	f, err := filterFrom(q.Get("user"), q.Get("user_id"), q.Get("client"))
	if err != nil {
		return err
	}
	if f.After, f.Limit, err = page(q); err != nil {
		return err
	}
	grants, err := ns.st.ListGrants(r.Context(), f, a.now())
	if err != nil {
		return storeError(err)
	}
	names := map[string]string{} // client names, looked up once per response
	views := make([]grantView, 0, len(grants))
	for _, g := range grants {
		name, ok := names[g.ClientID]
		if !ok {
			if c, err := ns.st.GetClient(r.Context(), g.ClientID); err == nil {
				name = c.Name
			}
			names[g.ClientID] = name
		}
		views = append(views, grantView{ID: g.ID, ClientID: g.ClientID, ClientName: name,
			User:  userView{ID: g.User.ID, Login: g.User.Login, Name: g.User.Name},
			Scope: g.Scope, Resource: g.Resource, CreatedAt: g.CreatedAt, ExpiresAt: g.ExpiresAt})
	}
	out := map[string]any{"store": ns.path, "grants": views}
	if len(grants) == f.Limit {
		out["next"] = grants[len(grants)-1].ID
	}
	return writeAdminJSON(w, http.StatusOK, out)
}

func (a *AdminAPI) deleteClient(w http.ResponseWriter, r *http.Request, id string) error {
	_, ns, err := a.target(r)
	if err != nil {
		return err
	}
	c, err := ns.st.GetClient(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return apiError(http.StatusNotFound, "no client %s", quoteID(id))
	}
	if err != nil {
		return storeError(err)
	}
	// The grants go first, counted, then the client with any grant
	// issued meanwhile.
	n, err := a.revokeAudited(r, ns.st, store.GrantFilter{ClientID: id}, c.Name)
	if err != nil {
		return err
	}
	if err := ns.st.DeleteClient(r.Context(), id); errors.Is(err, store.ErrNotFound) {
		return apiError(http.StatusNotFound, "no client %s", quoteID(id))
	} else if err != nil {
		return storeError(err)
	}
	a.audit.Info("client deleted", zap.String("event", "client_deleted"), zap.String("client_id", id),
		zap.String("client_name", c.Name), zap.Int("grants_revoked", n))
	return writeAdminJSON(w, http.StatusOK, map[string]any{"deleted": id, "grants_revoked": n})
}

// maxAuditedGrants bounds how many grants one revocation lists for the
// audit log and for withdrawing consents, in pages of auditPage
// (variables for tests). What is revoked is never bounded.
var (
	maxAuditedGrants = oauth.DefaultMaxListed
	auditPage        = store.MaxListLimit
)

// revoker revokes grants in st as an operator does, auditing each.
func (a *AdminAPI) revoker(st store.Store) oauth.Revoker {
	return oauth.Revoker{Store: st, Observer: observer(a.audit), Reason: oauth.ReasonAdmin,
		MaxListed: maxAuditedGrants, ListPage: auditPage}
}

func (a *AdminAPI) revokeGrant(w http.ResponseWriter, r *http.Request, id string) error {
	_, ns, err := a.target(r)
	if err != nil {
		return err
	}
	if err := a.revoker(ns.st).RevokeGrant(r.Context(), id, a.now()); errors.Is(err, store.ErrNotFound) {
		return apiError(http.StatusNotFound, "no live grant %s", quoteID(id))
	} else if err != nil {
		return storeError(err)
	}
	return writeAdminJSON(w, http.StatusOK, map[string]any{"revoked": 1})
}

// revokeRequest is the body of POST /mcp_auth/revoke.
type revokeRequest struct {
	User     string `json:"user,omitempty"`
	UserID   int64  `json:"user_id,omitempty"`
	ClientID string `json:"client_id,omitempty"`
}

func (a *AdminAPI) revokeGrants(w http.ResponseWriter, r *http.Request, _ string) error {
	_, ns, err := a.target(r)
	if err != nil {
		return err
	}
	var req revokeRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, maxAdminBody+1))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return apiError(http.StatusBadRequest, "the body must be a JSON object with user, user_id or client_id: %v", err)
	}
	if dec.More() {
		return apiError(http.StatusBadRequest, "the body must hold exactly one JSON object")
	}
	if req.UserID < 0 {
		return apiError(http.StatusBadRequest, "user_id must be a positive GitHub user ID")
	}
	f, err := filterFrom(req.User, "", req.ClientID)
	if err != nil {
		return err
	}
	f.UserID = req.UserID
	if !f.NamesSubject() {
		return apiError(http.StatusBadRequest, "name a user (user or user_id) or a client (client_id) whose grants to revoke")
	}
	n, err := a.revokeAudited(r, ns.st, f, "")
	if err != nil {
		return err
	}
	return writeAdminJSON(w, http.StatusOK, map[string]any{"revoked": n})
}

// revokeAudited revokes every grant f selects, audits each (and, in one
// line, those it did not list), and withdraws the consents of their
// users, as oauth.Revoker.RevokeGrants does. clientName, if known, goes
// into the audit lines. It returns how many grants were revoked.
func (a *AdminAPI) revokeAudited(r *http.Request, st store.Store, f store.GrantFilter, clientName string) (int, error) {
	done, err := a.revoker(st).RevokeGrants(r.Context(), f, clientName, a.now())
	if err != nil {
		return 0, storeError(err)
	}
	if done.Truncated || done.Count != done.Listed {
		a.audit.Warn("grants revoked without a line each", zap.String("event", "grants_revoked_unlisted"),
			zap.Int("revoked", done.Count), zap.Int("listed", done.Listed), zap.Bool("over_listing_bound", done.Truncated))
	}
	return done.Count, nil
}

// --- input -----------------------------------------------------------------

// maxAdminParam bounds query parameters; IDs and logins are far shorter.
const maxAdminParam = 1024

// query parses the query string, refusing parameters not in names (a
// mistyped filter must not silently list, or revoke, everything) and
// repeated or oversized ones.
func query(r *http.Request, names ...string) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, apiError(http.StatusBadRequest, "malformed query string")
	}
	for k, vs := range q {
		if !slices.Contains(names, k) {
			return nil, apiError(http.StatusBadRequest, "unknown parameter %s; this route takes %s", quoteID(k), strings.Join(names, ", "))
		}
		if len(vs) > 1 {
			return nil, apiError(http.StatusBadRequest, "parameter %s given more than once", k)
		}
		if len(vs[0]) > maxAdminParam {
			return nil, apiError(http.StatusBadRequest, "parameter %s is too long", k)
		}
	}
	return q, nil
}

// page reads after and limit; a limit above store.MaxListLimit is clamped.
func page(q url.Values) (after string, limit int, err error) {
	after = q.Get("after")
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			return "", 0, apiError(http.StatusBadRequest, "limit must be a positive number")
		}
		limit = n
	}
	return after, store.ClampLimit(limit), nil
}

// filterFrom builds a grant filter from a login, a numeric user ID and a
// client ID, any of them empty.
func filterFrom(user, userID, client string) (store.GrantFilter, error) {
	f := store.GrantFilter{UserLogin: strings.TrimPrefix(user, "@"), ClientID: client}
	if userID != "" {
		id, err := strconv.ParseInt(userID, 10, 64)
		if err != nil || id <= 0 {
			return f, apiError(http.StatusBadRequest, "user_id must be a positive GitHub user ID")
		}
		f.UserID = id
	}
	if len(f.UserLogin) > maxAdminParam || len(f.ClientID) > maxAdminParam {
		return f, apiError(http.StatusBadRequest, "user or client_id is too long")
	}
	return f, nil
}

// target reads the query (taking names and store) and picks the state file
// the request is about.
func (a *AdminAPI) target(r *http.Request, names ...string) (url.Values, namedStore, error) {
	q, err := query(r, append(names, "store")...)
	if err != nil {
		return nil, namedStore{}, err
	}
	ns, err := a.pick(q)
	return q, ns, err
}

// pick chooses the state file a request is about: the only one, or the
// one named by ?store=.
func (a *AdminAPI) pick(q url.Values) (namedStore, error) {
	all := a.stores()
	if want := q.Get("store"); want != "" {
		for _, s := range all {
			if s.path == want {
				return s, nil
			}
		}
		return namedStore{}, apiError(http.StatusNotFound, "the running config has no state file %s", quoteID(want))
	}
	switch len(all) {
	case 0:
		return namedStore{}, apiError(http.StatusNotFound, "the running config has no mcp_auth state")
	case 1:
		return all[0], nil
	}
	paths := make([]string, len(all))
	for i, s := range all {
		paths[i] = s.path
	}
	return namedStore{}, apiError(http.StatusBadRequest, "the running config has several state files; pick one with ?store= (%s)", strings.Join(paths, ", "))
}

// storeError is a store failure: 503, the store may come back.
func storeError(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: err}
	}
	return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: fmt.Errorf("the state store failed: %w", err)}
}

// quoteID quotes an identifier from the request for an error message,
// shortened so a huge one does not bloat the response or the log.
func quoteID(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strconv.Quote(s)
}

func writeAdminJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// Interface guards
var (
	_ caddy.Provisioner = (*AdminAPI)(nil)
	_ caddy.AdminRouter = (*AdminAPI)(nil)
)
