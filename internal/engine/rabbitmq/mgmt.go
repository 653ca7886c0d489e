package rabbitmq

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// mgmtRequestTimeout bounds one management API call. The API answers in
// milliseconds on a healthy node; a node that takes longer is booting or
// stuck, and callers poll again rather than wait on one request.
const mgmtRequestTimeout = 5 * time.Second

// mgmt is a small client of one node's management HTTP API
// (http://<management address>:<managementPort>/api/...).
type mgmt struct {
	host     string // the spec node, for error messages
	base     string // http://address:port
	login    string
	password string
	client   *http.Client
}

func newMgmt(host, address string, port int, user, password string) *mgmt {
	return &mgmt{
		host:     host,
		base:     "http://" + net.JoinHostPort(address, strconv.Itoa(port)),
		login:    user,
		password: password,
		client: &http.Client{
			Timeout: mgmtRequestTimeout,
			Transport: &http.Transport{
				// Never through a proxy from the environment: the management
				// addresses are on the cluster's own network (on a lab, on
				// this machine's bridges) and a proxy could not reach them.
				Proxy: nil,
				// Each call stands alone: polls span node restarts, and an
				// idle connection to a killed node is only a stale socket.
				DisableKeepAlives: true,
				DialContext:       (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
			},
		},
	}
}

// apiError is an HTTP answer other than the expected one.
type apiError struct {
	Host   string
	Method string
	URL    string
	Status int
	Body   string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%s: %s %s: HTTP %d: %s", e.Host, e.Method, e.URL, e.Status, e.Body)
}

// isStatus reports whether err is an API answer with the given status.
func isStatus(err error, status int) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.Status == status
}

// call sends one request; out, when not nil, receives the JSON answer.
// Any 2xx status is success. The error names the host, method and URL
// (never the credentials) and carries the answer's body.
func (m *mgmt) call(ctx context.Context, method, path string, body []byte, out any) error {
	u := m.base + path
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return fmt.Errorf("%s: %s %s: %w", m.host, method, u, err)
	}
	req.SetBasicAuth(m.login, m.password)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := m.client.Do(req)
	if err != nil {
		// url.Error repeats method and URL; unwrap to the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("%s: %s %s: %w", m.host, method, u, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("%s: %s %s: reading the answer: %w", m.host, method, u, err)
	}
	if resp.StatusCode/100 != 2 {
		b := strings.TrimSpace(string(data))
		if len(b) > 500 {
			b = b[:500] + "..."
		}
		return &apiError{Host: m.host, Method: method, URL: u, Status: resp.StatusCode, Body: b}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s: %s %s: unexpected answer: %w", m.host, method, u, err)
		}
	}
	return nil
}

// clusterNode is one entry of /api/nodes: a member of the cluster as the
// asked node sees it.
type clusterNode struct {
	Name    string `json:"name"`
	Running bool   `json:"running"`
	// Partitions lists the members this one cannot reach although they
	// run: a network partition. Empty in a healthy cluster.
	Partitions []string `json:"partitions"`
}

// nodes lists the cluster's members as this node sees them (its Mnesia
// cluster membership, running or not).
func (m *mgmt) nodes(ctx context.Context) ([]clusterNode, error) {
	var out []clusterNode
	return out, m.call(ctx, http.MethodGet, "/api/nodes?columns=name,running,partitions", nil, &out)
}

// mgmtUser is an entry of /api/users.
type mgmtUser struct {
	Name         string          `json:"name"`
	PasswordHash string          `json:"password_hash"`
	Algorithm    string          `json:"hashing_algorithm"`
	Tags         json.RawMessage `json:"tags"`
}

// tagList reads tags as a list: RabbitMQ 3.9+ answers a JSON list, older
// versions a comma-separated string.
func (u mgmtUser) tagList() []string {
	var list []string
	if json.Unmarshal(u.Tags, &list) == nil {
		return list
	}
	var s string
	if json.Unmarshal(u.Tags, &s) == nil && s != "" {
		return strings.Split(s, ",")
	}
	return nil
}

// user returns a user, or found false when there is none by that name.
func (m *mgmt) user(ctx context.Context, name string) (u mgmtUser, found bool, err error) {
	err = m.call(ctx, http.MethodGet, "/api/users/"+url.PathEscape(name), nil, &u)
	if isStatus(err, http.StatusNotFound) {
		return u, false, nil
	}
	return u, err == nil, err
}

func (m *mgmt) deleteUser(ctx context.Context, name string) error {
	err := m.call(ctx, http.MethodDelete, "/api/users/"+url.PathEscape(name), nil, nil)
	if isStatus(err, http.StatusNotFound) {
		return nil // gone already: what was wanted
	}
	return err
}

// vhostExists reports whether a virtual host exists.
func (m *mgmt) vhostExists(ctx context.Context, name string) (bool, error) {
	err := m.call(ctx, http.MethodGet, "/api/vhosts/"+url.PathEscape(name), nil, nil)
	if isStatus(err, http.StatusNotFound) {
		return false, nil
	}
	return err == nil, err
}

// permissions returns a user's permissions on a vhost, found false when
// the user has none there.
func (m *mgmt) permissions(ctx context.Context, vhost, user string) (p permission, found bool, err error) {
	err = m.call(ctx, http.MethodGet, "/api/permissions/"+url.PathEscape(vhost)+"/"+url.PathEscape(user), nil, &p)
	if isStatus(err, http.StatusNotFound) {
		return p, false, nil
	}
	return p, err == nil, err
}

// policy returns a policy, found false when there is none by that name.
func (m *mgmt) policy(ctx context.Context, vhost, name string) (p policy, found bool, err error) {
	err = m.call(ctx, http.MethodGet, "/api/policies/"+url.PathEscape(vhost)+"/"+url.PathEscape(name), nil, &p)
	if isStatus(err, http.StatusNotFound) {
		return p, false, nil
	}
	return p, err == nil, err
}

// importDefinitions merges a definitions document into the cluster: users,
// vhosts, permissions and policies it names are created or overwritten;
// nothing else is removed.
func (m *mgmt) importDefinitions(ctx context.Context, defs []byte) error {
	return m.call(ctx, http.MethodPost, "/api/definitions", defs, nil)
}
