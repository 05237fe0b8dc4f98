package oauth

import (
	"net/http"
	"slices"
	"strings"
)

// authServerMetadata is the RFC 8414 document.
type authServerMetadata struct {
	Issuer                                     string   `json:"issuer"`
	AuthorizationEndpoint                      string   `json:"authorization_endpoint"`
	TokenEndpoint                              string   `json:"token_endpoint"`
	RegistrationEndpoint                       string   `json:"registration_endpoint,omitempty"`
	RevocationEndpoint                         string   `json:"revocation_endpoint"`
	ScopesSupported                            []string `json:"scopes_supported"`
	ResponseTypesSupported                     []string `json:"response_types_supported"`
	ResponseModesSupported                     []string `json:"response_modes_supported"`
	GrantTypesSupported                        []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported          []string `json:"token_endpoint_auth_methods_supported"`
	RevocationEndpointAuthMethodsSupported     []string `json:"revocation_endpoint_auth_methods_supported"`
	CodeChallengeMethodsSupported              []string `json:"code_challenge_methods_supported"`
	AuthorizationResponseIssParameterSupported bool     `json:"authorization_response_iss_parameter_supported"`
	ClientIDMetadataDocumentSupported          bool     `json:"client_id_metadata_document_supported"`
}

// protectedResourceMetadata is the RFC 9728 document.
type protectedResourceMetadata struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers"`
	ScopesSupported        []string `json:"scopes_supported"`
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
}

var clientAuthMethods = []string{authMethodBasic, authMethodPost, authMethodNone}

func (s *Server) serveASMetadata(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	iss := s.issuer(r)
	registration := iss + pathRegister
	if s.cfg.RegistrationClosed {
		registration = ""
	}
	writeJSON(w, http.StatusOK, authServerMetadata{
		Issuer:                                     iss,
		AuthorizationEndpoint:                      iss + pathAuthorize,
		TokenEndpoint:                              iss + PathToken,
		RegistrationEndpoint:                       registration,
		RevocationEndpoint:                         iss + pathRevoke,
		ScopesSupported:                            listed(s.scopes),
		ResponseTypesSupported:                     []string{"code"},
		ResponseModesSupported:                     []string{"query"},
		GrantTypesSupported:                        []string{grantAuthorizationCode, grantRefreshToken},
		TokenEndpointAuthMethodsSupported:          clientAuthMethods,
		RevocationEndpointAuthMethodsSupported:     clientAuthMethods,
		CodeChallengeMethodsSupported:              []string{"S256"},
		AuthorizationResponseIssParameterSupported: true,
		ClientIDMetadataDocumentSupported:          s.cimd != nil,
	})
}

// servePRM serves the root document, whose resource is the whole site (the
// issuer), and one document per protected path at the path-aware URL.
func (s *Server) servePRM(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	iss := s.issuer(r)
	doc := protectedResourceMetadata{
		AuthorizationServers:   []string{iss},
		BearerMethodsSupported: []string{"header"},
	}
	if sub := strings.TrimPrefix(r.URL.Path, pathPRM); sub == "" {
		doc.Resource = iss
		doc.ScopesSupported = listed(s.scopes)
	} else {
		// A document for every URL under a protected path, naming that
		// URL: MCP clients accept a document only if its resource is
		// exactly the URL they connected to (RFC 9728 section 3.3), and
		// an MCP endpoint may lie below the protected prefix. A token
		// asked for with that URL is bound to the protected resource.
		var res *Resource
		if cleanSubPath(sub) {
			res = s.ResourceFor(sub)
		}
		if res == nil {
			newError(ErrNotFound, "no protected resource at "+quote(sub)).Write(w)
			return
		}
		doc.Resource = iss + sub
		doc.ScopesSupported = listed(s.resourceScopes(res))
	}
	writeJSON(w, http.StatusOK, doc)
}

// resourceScopes are the scopes a resource's document lists: the
// configured supported scopes and the resource's own required ones, not
// those other resources require. Clients request what the document lists,
// so a token for /mcp does not carry /admin's scope by accident.
func (s *Server) resourceScopes(res *Resource) []string {
	scopes := slices.Concat(s.cfg.ScopesSupported, res.Scopes)
	slices.Sort(scopes)
	return slices.Compact(scopes)
}

// listed makes an empty list an empty JSON array, never null: both
// documents always carry scopes_supported, so that a client reading it
// learns that no scope is needed rather than guessing its own (mcp-remote
// falls back to OpenID Connect's when the member is absent).
func listed(xs []string) []string {
	if xs == nil {
		return []string{}
	}
	return xs
}

// metadataURL is where the RFC 9728 document for a request to res lives;
// nil means the root document. A request below the protected prefix, such
// as /notes/sse under protect /notes, is pointed at the document for its
// own URL: MCP clients accept a document only if its resource is exactly
// the URL they connected to, and that one is bound to the same resource.
func (s *Server) metadataURL(r *http.Request, res *Resource) string {
	if res == nil {
		return s.issuer(r) + pathPRM
	}
	if p := r.URL.EscapedPath(); p != res.Path && strings.HasPrefix(p, res.Path) && cleanSubPath(p) {
		return s.issuer(r) + pathPRM + p
	}
	return s.issuer(r) + pathPRM + res.Path
}
