package supervise

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/hastack/hastack/internal/node"
)

// Request operations.
const (
	opStart       = "start"
	opRestart     = "restart"
	opStop        = "stop"
	opSignal      = "signal"
	opStatus      = "status"
	opList        = "list"
	opDefinitions = "definitions"
)

// request is one client call.
type request struct {
	Op      string         `json:"op"`
	Name    string         `json:"name,omitempty"`
	Service *node.Service  `json:"service,omitempty"`
	Timeout time.Duration  `json:"timeout,omitempty"` // stop's grace
	Signal  syscall.Signal `json:"signal,omitempty"`
	// Budget is the time left on the caller's context; 0 is no limit.
	Budget time.Duration `json:"budget,omitempty"`
}

// response is the server's answer; Error is set when the call failed.
type response struct {
	Error   string              `json:"error,omitempty"`
	State   *node.ServiceState  `json:"state,omitempty"`
	States  []node.ServiceState `json:"states,omitempty"`
	Records []Record            `json:"records,omitempty"`
}

// Client talks to a Server. It connects afresh for every call, so it can be
// made before the server is up and survives the server restarting.
type Client struct {
	path string
}

var _ node.Supervisor = (*Client)(nil)

// Dial returns a client of the server at socketPath. It does not connect.
func Dial(socketPath string) *Client {
	return &Client{path: socketPath}
}

// Start starts the service unless it is running. A process that dies right
// away is an error carrying its exit status and the end of its log.
func (c *Client) Start(ctx context.Context, s node.Service) error {
	_, err := c.call(ctx, "start "+s.Name, request{Op: opStart, Service: &s})
	return err
}

// Restart starts a service again from the definition it was last started
// with. Like Start, it leaves a running service alone.
func (c *Client) Restart(ctx context.Context, name string) error {
	_, err := c.call(ctx, "restart "+name, request{Op: opRestart, Name: name})
	return err
}

// Stop sends the stop signal, waits up to timeout, then SIGKILLs the
// service's process group. ctx should allow more than timeout.
func (c *Client) Stop(ctx context.Context, name string, timeout time.Duration) error {
	_, err := c.call(ctx, "stop "+name, request{Op: opStop, Name: name, Timeout: timeout})
	return err
}

// Signal sends sig to the service's main process; it must be running.
func (c *Client) Signal(ctx context.Context, name string, sig syscall.Signal) error {
	_, err := c.call(ctx, "signal "+name, request{Op: opSignal, Name: name, Signal: sig})
	return err
}

// Status reports one service; one never started is simply not running.
func (c *Client) Status(ctx context.Context, name string) (node.ServiceState, error) {
	resp, err := c.call(ctx, "status of "+name, request{Op: opStatus, Name: name})
	if err != nil {
		return node.ServiceState{}, err
	}
	if resp.State == nil {
		return node.ServiceState{}, fmt.Errorf("status of %s: the supervisor at %s sent no state", name, c.path)
	}
	return *resp.State, nil
}

// List reports every service ever started, in first-start order.
func (c *Client) List(ctx context.Context) ([]node.ServiceState, error) {
	resp, err := c.call(ctx, "listing services", request{Op: opList})
	return resp.States, err
}

// Definitions reports every service ever started, with the definition it
// was last started with, in first-start order.
func (c *Client) Definitions(ctx context.Context) ([]Record, error) {
	resp, err := c.call(ctx, "listing service definitions", request{Op: opDefinitions})
	return resp.Records, err
}

// call makes one request on a fresh connection. what names the call in
// errors that happen on this side.
func (c *Client) call(ctx context.Context, what string, req request) (response, error) {
	if err := ctx.Err(); err != nil {
		return response{}, fmt.Errorf("%s: %w", what, err)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.path)
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return response{}, fmt.Errorf("%s: %w", what, ctx.Err())
		case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
			return response{}, fmt.Errorf("%s: the supervisor is not running at %s", what, c.path)
		}
		return response{}, fmt.Errorf("%s: connecting to the supervisor at %s: %w", what, c.path, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
		req.Budget = max(time.Until(dl), 1) // 0 would mean no limit
	}
	// Cancellation, not only the deadline, must end the wait.
	defer context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })()

	var resp response
	err = json.NewEncoder(conn).Encode(req)
	if err == nil {
		err = json.NewDecoder(conn).Decode(&resp)
	}
	if err != nil {
		if ctx.Err() != nil {
			return response{}, fmt.Errorf("%s: %w", what, ctx.Err())
		}
		return response{}, fmt.Errorf("%s: talking to the supervisor at %s: %w", what, c.path, err)
	}
	if resp.Error != "" {
		// The server's messages already name the service and the failure.
		return resp, errors.New(resp.Error)
	}
	return resp, nil
}
