"""The calculator tool: exact arithmetic on an expression, evaluated from its syntax tree, never `eval`.

A small model gets arithmetic wrong; a tool that gets it exactly right is worth more than one that
is fast. So numbers are exact: integers of any size, and every literal with a decimal point is the
fraction it spells (0.1 is 1/10, not the nearest float), so `0.1 + 0.2` is `0.3`. A result is
printed as an integer, an exact decimal when it has one, or a fraction with its decimal expansion.
Only irrational functions (sqrt of a non-square, log, sin, ...) fall back to floating point, and
say so with `≈`.

The expression is parsed by Python's `ast` and walked here: only number literals, the arithmetic
operators, parentheses and a fixed table of functions and constants are accepted; a name, an
attribute, a subscript, a string or any other construct is refused. Sizes are checked before any
work is done, so `9**9**9` or `factorial(10**9)` is a one-line error at once, not a hung process.
"""

from __future__ import annotations

import ast
import math
import operator
from fractions import Fraction

from lmstack.errors import LmstackError
from lmstack.tools import Tool

MAX_DIGITS = 10_000  # of any intermediate or final integer part
MAX_FACTORIAL = 3_000
MAX_EXPRESSION = 2_000  # characters
_MAX_BITS = int(MAX_DIGITS * math.log2(10)) + 1


class CalculatorError(LmstackError):
    """An expression the calculator refuses or cannot evaluate (the message says why)."""


def _exact(f: float | Fraction | int) -> Fraction | float:
    return Fraction(f) if isinstance(f, int | Fraction) else f


def _check_size(x: Fraction | float) -> Fraction | float:
    if isinstance(x, Fraction):
        if max(abs(x.numerator).bit_length(), x.denominator.bit_length()) > _MAX_BITS:
            raise CalculatorError(f"result has more than {MAX_DIGITS:,} digits")
    elif not math.isfinite(x):
        raise CalculatorError("result is not a finite number")
    return x


def _power(base: Fraction | float, exp: Fraction | float) -> Fraction | float:
    if isinstance(exp, Fraction) and exp.denominator == 1 and isinstance(base, Fraction):
        n = exp.numerator
        if base == 0 and n < 0:
            raise CalculatorError("division by zero (zero to a negative power)")
        size = max(abs(base.numerator).bit_length(), base.denominator.bit_length())
        if size > 1 and abs(n) * (size - 1) > _MAX_BITS:  # |base| >= 2: digits grow with the exponent
            raise CalculatorError(f"result would have more than {MAX_DIGITS:,} digits")
        return base**n
    b, e = float(base), float(exp)
    if b < 0:
        raise CalculatorError("a negative number to a fractional power is not a real number")
    try:
        return b**e
    except OverflowError:
        raise CalculatorError("result is too large") from None


def _div(a, b):
    if b == 0:
        raise CalculatorError("division by zero")
    return a / b


def _floordiv(a, b):
    if b == 0:
        raise CalculatorError("division by zero")
    return Fraction(math.floor(a / b)) if isinstance(a / b, Fraction) else float(math.floor(a / b))


def _mod(a, b):
    if b == 0:
        raise CalculatorError("modulo by zero")
    return a % b


_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: _div,
           ast.FloorDiv: _floordiv, ast.Mod: _mod, ast.Pow: _power, ast.BitXor: _power}  # 2^10 means power


def _integer(x, what: str) -> int:
    if not (isinstance(x, Fraction) and x.denominator == 1):
        raise CalculatorError(f"{what} needs a whole number, got {_format(x)}")
    return x.numerator


def _factorial(x):
    n = _integer(x, "factorial")
    if n < 0:
        raise CalculatorError("factorial of a negative number")
    if n > MAX_FACTORIAL:
        raise CalculatorError(f"factorial is limited to n <= {MAX_FACTORIAL:,}")
    return Fraction(math.factorial(n))


def _sqrt(x):
    if x < 0:
        raise CalculatorError("square root of a negative number")
    if isinstance(x, Fraction):
        n, d = math.isqrt(x.numerator), math.isqrt(x.denominator)
        if n * n == x.numerator and d * d == x.denominator:
            return Fraction(n, d)
    return math.sqrt(x)


def _log(x, base=None):
    if x <= 0 or (base is not None and (base <= 0 or base == 1)):
        raise CalculatorError("logarithm of a non-positive number (or to base 0 or 1)")
    return math.log(x) if base is None else math.log(x) / math.log(base)


def _float_fn(fn):
    return lambda *a: fn(*(float(v) for v in a))


_FUNCTIONS = {
    "sqrt": _sqrt, "factorial": _factorial, "abs": abs, "log": _log, "ln": _log,
    "log10": lambda x: _log(x, 10), "log2": lambda x: _log(x, 2), "exp": _float_fn(math.exp),
    "sin": _float_fn(math.sin), "cos": _float_fn(math.cos), "tan": _float_fn(math.tan),
    "floor": lambda x: Fraction(math.floor(x)), "ceil": lambda x: Fraction(math.ceil(x)),
    "round": lambda x, nd=Fraction(0): _round(x, nd), "min": min, "max": max,
    "gcd": lambda *a: Fraction(math.gcd(*(_integer(v, "gcd") for v in a))),
    "lcm": lambda *a: Fraction(math.lcm(*(_integer(v, "lcm") for v in a))),
    "comb": lambda n, k: Fraction(math.comb(_integer(n, "comb"), _integer(k, "comb"))),
    "perm": lambda n, k: Fraction(math.perm(_integer(n, "perm"), _integer(k, "perm"))),
}
_CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}


def _round(x, nd):
    digits = _integer(nd, "round's digits")
    if isinstance(x, Fraction):
        return round(x, digits) if digits else Fraction(round(x))
    return round(x, digits)


class _Evaluator:
    def __init__(self, source: str):
        self.source = source

    def eval(self, node: ast.AST):
        method = getattr(self, "_" + type(node).__name__, None)
        if method is None:
            raise CalculatorError(f"not allowed in an expression: {type(node).__name__.lower()}")
        return _check_size(method(node))

    def _Expression(self, node):
        return self.eval(node.body)

    def _Constant(self, node):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise CalculatorError(f"not a number: {node.value!r}")
        if isinstance(node.value, int):
            return Fraction(node.value)
        text = ast.get_source_segment(self.source, node) or repr(node.value)
        try:  # the digits as written, exactly (1e-3 and 0.1 included)
            return Fraction(text.replace("_", ""))
        except (ValueError, ZeroDivisionError):
            return _exact(node.value)

    def _BinOp(self, node):
        op = _BINARY.get(type(node.op))
        if op is None:
            raise CalculatorError(f"operator not supported: {type(node.op).__name__}")
        return op(self.eval(node.left), self.eval(node.right))

    def _UnaryOp(self, node):
        v = self.eval(node.operand)
        if isinstance(node.op, ast.USub):
            return -v
        if isinstance(node.op, ast.UAdd):
            return v
        raise CalculatorError(f"operator not supported: {type(node.op).__name__}")

    def _Name(self, node):
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        raise CalculatorError(f"unknown name {node.id!r}; constants: {', '.join(_CONSTANTS)}")

    def _Call(self, node):
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
            raise CalculatorError(f"unknown function; available: {', '.join(sorted(_FUNCTIONS))}")
        if node.keywords:
            raise CalculatorError("functions take positional arguments only")
        args = [self.eval(a) for a in node.args]
        try:
            return _exact(_FUNCTIONS[node.func.id](*args))
        except CalculatorError:
            raise
        except (TypeError, ValueError, OverflowError) as e:
            raise CalculatorError(f"{node.func.id}: {e}") from None


def _format(x: Fraction | float) -> str:
    if isinstance(x, float):
        return f"≈ {x:.15g}"
    if x.denominator == 1:
        return str(x.numerator)
    d, twos, fives = x.denominator, 0, 0
    while d % 2 == 0:
        d, twos = d // 2, twos + 1
    while d % 5 == 0:
        d, fives = d // 5, fives + 1
    if d == 1:  # a terminating decimal: print all of it
        places = max(twos, fives)
        scaled = abs(x.numerator) * 10**places // x.denominator
        sign = "-" if x < 0 else ""
        digits = str(scaled).rjust(places + 1, "0")
        return f"{sign}{digits[:-places]}.{digits[-places:]}"
    return f"{x.numerator}/{x.denominator} ≈ {float(x):.15g}"


def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression exactly; the result as text. Raises CalculatorError."""
    if not isinstance(expression, str) or not expression.strip():
        raise CalculatorError("give an arithmetic expression, e.g. 12 * (3 + 4)")
    if len(expression) > MAX_EXPRESSION:
        raise CalculatorError(f"expression longer than {MAX_EXPRESSION:,} characters")
    text = expression.strip().replace("×", "*").replace("÷", "/").replace("−", "-")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as e:
        raise CalculatorError(f"not an arithmetic expression ({e.msg})") from None
    except (ValueError, MemoryError, RecursionError):
        raise CalculatorError("not an arithmetic expression") from None
    try:
        return _format(_Evaluator(text).eval(tree))
    except RecursionError:
        raise CalculatorError("expression is nested too deeply") from None


def calculator_tool() -> Tool:
    """The calculator as a tool a model can call."""
    return Tool(
        name="calculator",
        description="Evaluate an arithmetic expression exactly: + - * / // % ** (or ^), parentheses, "
                    "integers of any size, decimals and fractions, and sqrt, factorial, log, exp, sin, cos, "
                    "tan, floor, ceil, round, abs, min, max, gcd, lcm, comb, perm, pi, e.",
        parameters={"type": "object",
                    "properties": {"expression": {"type": "string",
                                                  "description": "e.g. 1234 * 5678 or (2/3 + 0.25) ** 2"}},
                    "required": ["expression"]},
        fn=calculate)
