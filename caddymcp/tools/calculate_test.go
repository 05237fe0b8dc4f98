package tools_test

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/caddymcp/caddymcp/caddymcp/tools"
)

func TestCalculate(t *testing.T) {
	cs := connect(t, tools.Fixed(nil)) // calculate needs no caller
	tests := []struct {
		op       string
		a, b     float64
		result   float64
		expr     string
		approxOK bool // compare result within 1e-12 instead of exactly
	}{
		{"add", 2, 3, 5, "2 + 3 = 5", false},
		{"add", 0.1, 0.2, 0.30000000000000004, "0.1 + 0.2 = 0.30000000000000004", false},
		{"add", -2.5, 1, -1.5, "-2.5 + 1 = -1.5", false},
		{"subtract", 2, 5, -3, "2 - 5 = -3", false},
		{"subtract", 1e308, -1e307, 1.1e308, "", true},
		{"multiply", 6, 7, 42, "6 * 7 = 42", false},
		{"multiply", -1, 0, 0, "-1 * 0 = 0", false},
		{"multiply", 1e20, 10, 1e21, "100000000000000000000 * 10 = 1e+21", false},
		{"divide", 1, 4, 0.25, "1 / 4 = 0.25", false},
		{"divide", -9, 3, -3, "-9 / 3 = -3", false},
		{"divide", 1, 1e7, 1e-7, "1 / 10000000 = 1e-07", false},
		{"divide", 0, -5, 0, "0 / -5 = 0", false},
		{"power", 7, 8, 5764801, "7 ^ 8 = 5764801", false},
		{"power", 2, -1, 0.5, "2 ^ -1 = 0.5", false},
		{"power", 2, 0.5, math.Sqrt2, "2 ^ 0.5 = 1.4142135623730951", false},
		{"power", 0, 0, 1, "0 ^ 0 = 1", false},
		{"power", -2, 3, -8, "-2 ^ 3 = -8", false},
		{"power", 10, -400, 0, "10 ^ -400 = 0", false}, // underflow to 0 is finite: fine
		{"modulo", 7, 3, 1, "7 % 3 = 1", false},
		{"modulo", -7, 3, -1, "-7 % 3 = -1", false}, // sign of a (fmod), not Python's 2
		{"modulo", 7, -3, 1, "7 % -3 = 1", false},
		{"modulo", -7, -3, -1, "-7 % -3 = -1", false},
		{"modulo", 5.5, 2, 1.5, "5.5 % 2 = 1.5", false},
		{"modulo", -6, 3, 0, "-6 % 3 = 0", false}, // not "-0"
		{"modulo", 1e300, 7, math.Mod(1e300, 7), "", false},
	}
	for _, tc := range tests {
		t.Run(tc.op+"/"+tc.expr, func(t *testing.T) {
			res := call(t, cs, "calculate", map[string]any{"operation": tc.op, "a": tc.a, "b": tc.b})
			got := structured[tools.Calculation](t, res)
			if got.Operation != tc.op || got.A != tc.a || got.B != tc.b {
				t.Errorf("echoed inputs = %+v", got)
			}
			if tc.approxOK {
				if math.Abs(got.Result-tc.result) > 1e-12*math.Abs(tc.result) {
					t.Errorf("result = %v, want ≈ %v", got.Result, tc.result)
				}
			} else if got.Result != tc.result || math.Signbit(got.Result) != math.Signbit(tc.result) {
				t.Errorf("result = %v, want %v", got.Result, tc.result)
			}
			if tc.expr != "" && got.Expression != tc.expr {
				t.Errorf("expression = %q, want %q", got.Expression, tc.expr)
			}
			// The text block is the expression, not the JSON dump the SDK
			// would otherwise produce.
			if text := textOf(t, res); text != got.Expression {
				t.Errorf("text = %q, want %q", text, got.Expression)
			}
			raw, _ := json.Marshal(res.StructuredContent)
			if strings.Contains(string(raw), "-0,") || strings.Contains(string(raw), ":-0}") {
				t.Errorf("structuredContent has a negative zero: %s", raw)
			}
		})
	}
}

func TestCalculateErrors(t *testing.T) {
	cs := connect(t, tools.Fixed(nil))
	tests := []struct {
		op   string
		a, b float64
		want string
	}{
		{"divide", 5, 0, "division by zero: 5 / 0 is undefined"},
		{"divide", 0, 0, "division by zero"},
		{"divide", -1, 0, "division by zero"},
		{"modulo", 5, 0, "modulo by zero: 5 % 0 is undefined"},
		{"modulo", 0, 0, "modulo by zero"},
		{"power", 0, -1, "division by zero: 0 ^ -1 is undefined"},
		{"power", 10, 400, "result out of range: 10 ^ 400 is too large to represent"},
		{"power", -10, 401, "result out of range"},
		{"multiply", 1e308, 10, "result out of range"},
		{"add", 1.7976931348623157e308, 1.7976931348623157e308, "result out of range"},
		{"subtract", -1e308, 1e308, "result out of range"},
		{"divide", 1e308, 1e-308, "result out of range"},
		{"power", -8, 0.5, "result is not a real number: -8 ^ 0.5 is undefined"},
		{"power", -8, 1.0 / 3, "result is not a real number"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			res := call(t, cs, "calculate", map[string]any{"operation": tc.op, "a": tc.a, "b": tc.b})
			wantToolError(t, res, tc.want)
		})
	}
}

// TestCalculateInvalidArguments pins what a client sees for arguments the
// input schema refuses: not a protocol error but a tool error (isError)
// whose text starts with `validating "arguments"` and names the problem,
// produced by the SDK before the handler runs.
func TestCalculateInvalidArguments(t *testing.T) {
	cs := connect(t, tools.Fixed(nil))
	tests := map[string]struct {
		args any
		want string // substring of the SDK's validation message
	}{
		"unknown operation": {map[string]any{"operation": "sqrt", "a": 4, "b": 0}, "enum"},
		"empty operation":   {map[string]any{"operation": "", "a": 4, "b": 0}, "enum"},
		"operation case":    {map[string]any{"operation": "ADD", "a": 4, "b": 0}, "enum"},
		"missing b":         {map[string]any{"operation": "add", "a": 4}, "b"},
		"missing operation": {map[string]any{"a": 4, "b": 1}, "operation"},
		"no arguments":      {map[string]any{}, "required"},
		"a as string":       {map[string]any{"operation": "add", "a": "4", "b": 1}, "type"},
		"b as null":         {map[string]any{"operation": "add", "a": 4, "b": nil}, "type"},
		"operation number":  {map[string]any{"operation": 1, "a": 4, "b": 1}, "type"},
		"extra property":    {map[string]any{"operation": "add", "a": 4, "b": 1, "c": 2}, "c"},
		"out-of-range a":    {json.RawMessage(`{"operation":"add","a":1e400,"b":1}`), ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			res := call(t, cs, "calculate", tc.args)
			text := wantToolError(t, res, tc.want)
			if name != "out-of-range a" && !strings.HasPrefix(text, `validating "arguments"`) {
				t.Errorf("text = %q, want the SDK's schema validation error", text)
			}
		})
	}
}
