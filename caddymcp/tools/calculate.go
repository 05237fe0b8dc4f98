package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Calculation is the structured output of calculate. Expression restates
// the computation, e.g. "7 ^ 8 = 5764801".
type Calculation struct {
	Operation  string  `json:"operation"`
	A          float64 `json:"a"`
	B          float64 `json:"b"`
	Result     float64 `json:"result"`
	Expression string  `json:"expression"`
}

// calculateArgs is the input of calculate. The SDK has validated it against
// calculateInputSchema before the handler runs, so all fields are present
// and Operation is one of the enum values.
type calculateArgs struct {
	Operation string  `json:"operation"`
	A         float64 `json:"a"`
	B         float64 `json:"b"`
}

// The operation enum lives in the schema, where the SDK enforces it and the
// model can read it; the handler's switch must stay in step with it.
var calculateInputSchema = json.RawMessage(`{
	"type": "object",
	"properties": {
		"operation": {
			"type": "string",
			"enum": ["add", "subtract", "multiply", "divide", "power", "modulo"],
			"description": "add: a + b; subtract: a - b; multiply: a * b; divide: a / b; power: a raised to b; modulo: remainder of a / b, with the sign of a (like C fmod)"
		},
		"a": {"type": "number", "description": "first operand"},
		"b": {"type": "number", "description": "second operand"}
	},
	"required": ["operation", "a", "b"],
	"additionalProperties": false
}`)

var calculateOutputSchema = json.RawMessage(`{
	"type": "object",
	"properties": {
		"operation":  {"type": "string", "enum": ["add", "subtract", "multiply", "divide", "power", "modulo"]},
		"a":          {"type": "number"},
		"b":          {"type": "number"},
		"result":     {"type": "number"},
		"expression": {"type": "string", "description": "the computation written out, e.g. \"7 ^ 8 = 5764801\""}
	},
	"required": ["operation", "a", "b", "result", "expression"],
	"additionalProperties": false
}`)

// operatorSymbols maps each operation to the symbol used in Expression.
var operatorSymbols = map[string]string{
	"add":      "+",
	"subtract": "-",
	"multiply": "*",
	"divide":   "/",
	"power":    "^",
	"modulo":   "%",
}

func registerCalculate(s *mcp.Server) {
	mcp.AddTool(s, &mcp.Tool{
		Name:  "calculate",
		Title: "Calculate",
		Description: "Performs one arithmetic operation on two numbers (64-bit floating point): add, subtract, multiply, divide, power (a^b) or modulo. " +
			"modulo is the floating-point remainder of a / b with the sign of a, so -7 modulo 3 is -1 and 7 modulo -3 is 1. " +
			"Division or modulo by zero and results that are not finite (overflow, or e.g. a negative number raised to a fractional power) are reported as errors.",
		InputSchema:  calculateInputSchema,
		OutputSchema: calculateOutputSchema,
		Annotations: &mcp.ToolAnnotations{
			Title:          "Calculate",
			ReadOnlyHint:   true,
			IdempotentHint: true,
			OpenWorldHint:  boolPtr(false),
		},
	}, recovered("calculate", func(_ context.Context, _ *mcp.CallToolRequest, in calculateArgs) (*mcp.CallToolResult, Calculation, error) {
		out, err := calculate(in.Operation, in.A, in.B)
		if err != nil {
			return nil, Calculation{}, err
		}
		return textResult(out.Expression), out, nil
	}))
}

// calculate performs op on a and b. Errors are meant for the caller to read:
// they restate the offending expression.
func calculate(op string, a, b float64) (Calculation, error) {
	sym, ok := operatorSymbols[op]
	if !ok {
		// Unreachable through the SDK, which enforces the enum; kept so that
		// the function is total.
		return Calculation{}, fmt.Errorf("unknown operation %q", op)
	}
	// JSON cannot carry NaN or infinities, but a direct caller could.
	if !isFinite(a) || !isFinite(b) {
		return Calculation{}, fmt.Errorf("operands must be finite numbers")
	}
	expr := formatNumber(a) + " " + sym + " " + formatNumber(b)

	var r float64
	switch op {
	case "add":
		r = a + b
	case "subtract":
		r = a - b
	case "multiply":
		r = a * b
	case "divide":
		if b == 0 {
			return Calculation{}, fmt.Errorf("division by zero: %s is undefined", expr)
		}
		r = a / b
	case "power":
		// 0 raised to a negative power is 1/0: say so rather than report a
		// generic overflow.
		if a == 0 && b < 0 {
			return Calculation{}, fmt.Errorf("division by zero: %s is undefined", expr)
		}
		r = math.Pow(a, b)
	case "modulo":
		if b == 0 {
			return Calculation{}, fmt.Errorf("modulo by zero: %s is undefined", expr)
		}
		// math.Mod, not floored modulo: the result takes the sign of a,
		// like C's fmod and JavaScript's %, which is what the tool
		// description promises.
		r = math.Mod(a, b)
	}
	switch {
	case math.IsNaN(r):
		return Calculation{}, fmt.Errorf("result is not a real number: %s is undefined", expr)
	case math.IsInf(r, 0):
		return Calculation{}, fmt.Errorf("result out of range: %s is too large to represent", expr)
	}
	// Report -0 as 0: a signed zero is an artefact of floating point that
	// would only confuse a reader ("-5 % 5 = -0").
	if r == 0 {
		r = 0
	}
	return Calculation{
		Operation:  op,
		A:          a,
		B:          b,
		Result:     r,
		Expression: expr + " = " + formatNumber(r),
	}, nil
}

func isFinite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// formatNumber writes x the way people (and JavaScript) expect: plain
// decimal in the everyday range, so 5764801 is not "5.764801e+06", and
// exponent notation only for very large or very small magnitudes, so 1e300
// does not become a 301-digit string. It uses the shortest representation
// that round-trips.
func formatNumber(x float64) string {
	if x == 0 {
		return "0"
	}
	if abs := math.Abs(x); abs >= 1e-6 && abs < 1e21 {
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	return strconv.FormatFloat(x, 'g', -1, 64)
}
