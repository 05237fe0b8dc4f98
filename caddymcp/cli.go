package caddymcp

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "mcp-auth",
		Usage: "clients | grants | revoke | delete-client",
		Short: "Commands of the caddymcp plugin",
		Long: `Commands of the caddymcp plugin (mcp_auth, mcp_server).

"clients", "grants", "revoke" and "delete-client" operate a running server
through its admin API (admin.api.mcp_auth); they never open its state file.
The admin address is --address, else the admin address of --config, else
localhost:2019, as for "caddy reload" and "caddy stop".

To try the plugin with no GitHub OAuth app, run the demo from the
repository: go run ./cmd/caddymcp-demo`,
		CobraFunc: func(cmd *cobra.Command) {
			clients := adminCommand(&cobra.Command{
				Use:   "clients [--after <id>] [--limit <n>]",
				Short: "List the registered OAuth clients",
				Args:  cobra.NoArgs,
			}, cliClients)
			pageFlags(clients)
			cmd.AddCommand(clients)

			grants := adminCommand(&cobra.Command{
				Use:   "grants [--user <login>] [--user-id <id>] [--client <id>] [--after <id>] [--limit <n>]",
				Short: "List live grants: who is connected, with which client, to which resource",
				Args:  cobra.NoArgs,
			}, cliGrants)
			pageFlags(grants)
			subjectFlags(grants)
			cmd.AddCommand(grants)

			revoke := adminCommand(&cobra.Command{
				Use:   "revoke <grant-id> | revoke --user <login> | --user-id <id> | --client <id>",
				Short: "Revoke one grant, or every grant of a user (or client), with all their tokens",
				Args:  cobra.MaximumNArgs(1),
			}, cliRevoke)
			subjectFlags(revoke)
			cmd.AddCommand(revoke)

			cmd.AddCommand(adminCommand(&cobra.Command{
				Use:   "delete-client <client-id>",
				Short: "Delete a client and revoke all its grants",
				Args:  cobra.ExactArgs(1),
			}, cliDeleteClient))
		},
	})
}

// cliFunc is one admin subcommand: it writes its result to out.
type cliFunc func(out io.Writer, fl caddycmd.Flags) error

// adminCommand adds the flags every admin subcommand takes and runs f.
func adminCommand(cmd *cobra.Command, f cliFunc) *cobra.Command {
	cmd.Flags().StringP("address", "", "", "The address of the admin API endpoint, if not the default")
	cmd.Flags().StringP("config", "c", "", "Configuration file to read the admin address from, if --address is not used")
	cmd.Flags().StringP("adapter", "a", "", "Name of the config adapter to apply (when --config is used)")
	cmd.Flags().String("store", "", "Path of the state file, when the running config has several")
	cmd.Flags().Bool("json", false, "Print the admin API's JSON instead of a table")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cmd.SilenceUsage = true
		return f(cmd.OutOrStdout(), caddycmd.Flags{FlagSet: cmd.Flags()})
	}
	return cmd
}

func pageFlags(cmd *cobra.Command) {
	cmd.Flags().String("after", "", "List from after this ID (the \"next\" of the previous page)")
	cmd.Flags().Int("limit", 0, "Page size (default 100, at most 1000)")
}

func subjectFlags(cmd *cobra.Command) {
	cmd.Flags().String("user", "", "GitHub login of the user")
	cmd.Flags().Int64("user-id", 0, "GitHub numeric ID of the user")
	cmd.Flags().String("client", "", "OAuth client ID")
}

// adminCall makes one request to the admin API and decodes the JSON answer
// into v.
func adminCall(fl caddycmd.Flags, method, path string, q url.Values, body any, v any) error {
	addr, err := caddycmd.DetermineAdminAPIAddress(fl.String("address"), nil, fl.String("config"), fl.String("adapter"))
	if err != nil {
		return fmt.Errorf("finding the admin API: %v", err)
	}
	if s := fl.String("store"); s != "" {
		q.Set("store", s)
	}
	uri := path
	if len(q) > 0 {
		uri += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = strings.NewReader(string(b))
	}
	resp, err := caddycmd.AdminAPIRequest(addr, method, uri, nil, rd)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(v)
}

// printJSON prints an answer as the admin API gave it.
func printJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func pageQuery(fl caddycmd.Flags) url.Values {
	q := url.Values{}
	if s := fl.String("after"); s != "" {
		q.Set("after", s)
	}
	if n := fl.Int("limit"); n != 0 {
		q.Set("limit", strconv.Itoa(n))
	}
	return q
}

// moreLine tells how to get the next page, if there is one.
func moreLine(out io.Writer, next string) {
	if next != "" {
		fmt.Fprintf(out, "(more: --after %s)\n", next)
	}
}

func cliClients(out io.Writer, fl caddycmd.Flags) error {
	var resp struct {
		Clients []clientView `json:"clients"`
		Next    string       `json:"next,omitempty"`
		Store   string       `json:"store"`
	}
	if err := adminCall(fl, http.MethodGet, "/mcp_auth/clients", pageQuery(fl), nil, &resp); err != nil {
		return err
	}
	if fl.Bool("json") {
		return printJSON(out, resp)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLIENT ID\tNAME\tAUTH\tREDIRECT URIS\tREGISTERED")
	for _, c := range resp.Clients {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.ID, orDash(c.Name), c.TokenEndpointAuthMethod,
			strings.Join(c.RedirectURIs, " "), c.CreatedAt.Local().Format(time.DateTime))
	}
	tw.Flush()
	moreLine(out, resp.Next)
	return nil
}

func cliGrants(out io.Writer, fl caddycmd.Flags) error {
	q := pageQuery(fl)
	addSubject(q, fl)
	var resp struct {
		Grants []grantView `json:"grants"`
		Next   string      `json:"next,omitempty"`
		Store  string      `json:"store"`
	}
	if err := adminCall(fl, http.MethodGet, "/mcp_auth/grants", q, nil, &resp); err != nil {
		return err
	}
	if fl.Bool("json") {
		return printJSON(out, resp)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GRANT\tUSER\tCLIENT\tRESOURCE\tSCOPE\tSINCE\tEXPIRES")
	for _, g := range resp.Grants {
		client := g.ClientID
		if g.ClientName != "" {
			client = g.ClientName + " (" + g.ClientID + ")"
		}
		fmt.Fprintf(tw, "%s\t%s (%d)\t%s\t%s\t%s\t%s\t%s\n", g.ID, g.User.Login, g.User.ID, client, orDash(g.Resource), orDash(g.Scope),
			g.CreatedAt.Local().Format(time.DateTime), g.ExpiresAt.Local().Format(time.DateTime))
	}
	tw.Flush()
	moreLine(out, resp.Next)
	return nil
}

// addSubject copies --user, --user-id and --client into q.
func addSubject(q url.Values, fl caddycmd.Flags) {
	if s := fl.String("user"); s != "" {
		q.Set("user", s)
	}
	if id, _ := fl.GetInt64("user-id"); id != 0 {
		q.Set("user_id", strconv.FormatInt(id, 10))
	}
	if s := fl.String("client"); s != "" {
		q.Set("client", s)
	}
}

func cliRevoke(out io.Writer, fl caddycmd.Flags) error {
	userID, _ := fl.GetInt64("user-id")
	subject := revokeRequest{User: fl.String("user"), UserID: userID, ClientID: fl.String("client")}
	var resp struct {
		Revoked int `json:"revoked"`
	}
	switch {
	case fl.NArg() == 1 && subject == (revokeRequest{}):
		if err := adminCall(fl, http.MethodDelete, "/mcp_auth/grants/"+url.PathEscape(fl.Arg(0)), url.Values{}, nil, &resp); err != nil {
			return err
		}
	case fl.NArg() == 0 && subject != (revokeRequest{}):
		if err := adminCall(fl, http.MethodPost, "/mcp_auth/revoke", url.Values{}, subject, &resp); err != nil {
			return err
		}
	default:
		return errors.New("revoke takes either a grant ID or --user, --user-id and/or --client")
	}
	if fl.Bool("json") {
		return printJSON(out, resp)
	}
	fmt.Fprintf(out, "revoked %d grant(s) and their tokens\n", resp.Revoked)
	return nil
}

func cliDeleteClient(out io.Writer, fl caddycmd.Flags) error {
	var resp struct {
		Deleted       string `json:"deleted"`
		GrantsRevoked int    `json:"grants_revoked"`
	}
	if err := adminCall(fl, http.MethodDelete, "/mcp_auth/clients/"+url.PathEscape(fl.Arg(0)), url.Values{}, nil, &resp); err != nil {
		return err
	}
	if fl.Bool("json") {
		return printJSON(out, resp)
	}
	fmt.Fprintf(out, "deleted client %s and revoked %d grant(s)\n", resp.Deleted, resp.GrantsRevoked)
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
