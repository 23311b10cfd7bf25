"""The problems of the built-in `code` environment: a statement, a reference solution, and stdin/stdout
test cases. Every reference solution passes every one of its cases (a test runs them in the sandbox)."""

from __future__ import annotations

from typing import Any


def _problem(name: str, statement: str, solution: str, cases: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "name": name,
        "statement": statement,
        "solution": solution,
        "tests": [{"input": stdin, "output": stdout} for stdin, stdout in cases],
    }


PROBLEMS: list[dict[str, Any]] = [
    _problem(
        "sum-two",
        "Read two integers a and b on one line and print their sum.",
        "a, b = map(int, input().split())\nprint(a + b)\n",
        [
            ("1 2\n", "3\n"),
            ("-5 5\n", "0\n"),
            ("1000000000 1000000000\n", "2000000000\n"),
            ("7 -10\n", "-3\n"),
        ],
    ),
    _problem(
        "reverse-line",
        "Read one line of text and print it reversed, character by character.",
        "print(input()[::-1])\n",
        [("hello\n", "olleh\n"), ("a b c\n", "c b a\n"), ("racecar\n", "racecar\n"), ("x\n", "x\n")],
    ),
    _problem(
        "fizzbuzz",
        "Read n. For i from 1 to n print one line: Fizz if i is divisible by 3, Buzz if by 5, FizzBuzz "
        "if by both, and i itself otherwise.",
        "n = int(input())\nfor i in range(1, n + 1):\n"
        "    print('FizzBuzz' if i % 15 == 0 else 'Fizz' if i % 3 == 0 else 'Buzz' if i % 5 == 0 else i)\n",
        [
            ("1\n", "1\n"),
            ("5\n", "1\n2\nFizz\n4\nBuzz\n"),
            ("15\n", "1\n2\nFizz\n4\nBuzz\nFizz\n7\n8\nFizz\nBuzz\n11\nFizz\n13\n14\nFizzBuzz\n"),
        ],
    ),
    _problem(
        "count-vowels",
        "Read one line and print how many vowels (a, e, i, o, u, in either case) it contains.",
        "print(sum(c in 'aeiou' for c in input().lower()))\n",
        [("hello world\n", "3\n"), ("AEIOU\n", "5\n"), ("rhythm\n", "0\n"), ("Programming Is Fun\n", "5\n")],
    ),
    _problem(
        "factorial",
        "Read n (0 <= n <= 30) and print n! (the factorial of n).",
        "import math\nprint(math.factorial(int(input())))\n",
        [("0\n", "1\n"), ("5\n", "120\n"), ("10\n", "3628800\n"), ("25\n", "15511210043330985984000000\n")],
    ),
    _problem(
        "fibonacci",
        "Read n (0 <= n <= 90) and print the n-th Fibonacci number, where F(0) = 0 and F(1) = 1.",
        "n = int(input())\na, b = 0, 1\nfor _ in range(n):\n    a, b = b, a + b\nprint(a)\n",
        [("0\n", "0\n"), ("1\n", "1\n"), ("10\n", "55\n"), ("90\n", "2880067194370816120\n")],
    ),
    _problem(
        "is-prime",
        "Read an integer n (1 <= n <= 10^12) and print yes if it is prime, no otherwise.",
        "n = int(input())\nprime = n > 1\nd = 2\nwhile d * d <= n and prime:\n"
        "    prime = n % d != 0\n    d += 1\nprint('yes' if prime else 'no')\n",
        [("1\n", "no\n"), ("2\n", "yes\n"), ("91\n", "no\n"), ("97\n", "yes\n"), ("1000000007\n", "yes\n")],
    ),
    _problem(
        "max-of-list",
        "The first line holds n, the second n integers. Print the largest of them.",
        "input()\nprint(max(map(int, input().split())))\n",
        [
            ("3\n1 5 2\n", "5\n"),
            ("1\n-7\n", "-7\n"),
            ("5\n-1 -2 -3 -4 -5\n", "-1\n"),
            ("4\n9 9 8 9\n", "9\n"),
        ],
    ),
    _problem(
        "palindrome",
        "Read one line and print yes if it reads the same backwards once everything but letters and "
        "digits is removed and case is ignored, no otherwise.",
        "s = [c.lower() for c in input() if c.isalnum()]\nprint('yes' if s == s[::-1] else 'no')\n",
        [
            ("A man, a plan, a canal: Panama\n", "yes\n"),
            ("hello\n", "no\n"),
            ("No 'x' in Nixon\n", "yes\n"),
            ("ab\n", "no\n"),
        ],
    ),
    _problem(
        "word-count",
        "Read all of standard input (possibly several lines) and print the number of words, a word being "
        "a maximal run of non-whitespace characters.",
        "import sys\nprint(len(sys.stdin.read().split()))\n",
        [
            ("one two three\n", "3\n"),
            ("  spaced   out \n\n words\n", "3\n"),
            ("\n", "0\n"),
            ("a\nb\nc d\n", "4\n"),
        ],
    ),
    _problem(
        "gcd",
        "Read two positive integers and print their greatest common divisor.",
        "import math\na, b = map(int, input().split())\nprint(math.gcd(a, b))\n",
        [("12 18\n", "6\n"), ("7 13\n", "1\n"), ("100 10\n", "10\n"), ("123456 7890\n", "6\n")],
    ),
    _problem(
        "sort-numbers",
        "Read integers on one line and print them in ascending order, separated by single spaces.",
        "print(*sorted(map(int, input().split())))\n",
        [("3 1 2\n", "1 2 3\n"), ("5\n", "5\n"), ("-1 10 -20 3 3\n", "-20 -1 3 3 10\n")],
    ),
    _problem(
        "anagram",
        "Read two words, one per line, and print yes if one is an anagram of the other (same letters, "
        "case ignored), no otherwise.",
        "a, b = input().lower(), input().lower()\nprint('yes' if sorted(a) == sorted(b) else 'no')\n",
        [
            ("listen\nsilent\n", "yes\n"),
            ("apple\npaple\n", "yes\n"),
            ("abc\nabd\n", "no\n"),
            ("Dusty\nStudy\n", "yes\n"),
        ],
    ),
    _problem(
        "digit-sum",
        "Read a non-negative integer of up to 1000 digits and print the sum of its digits.",
        "print(sum(map(int, input().strip())))\n",
        [("0\n", "0\n"), ("12345\n", "15\n"), ("99999999999999999999\n", "180\n"), ("1000001\n", "2\n")],
    ),
    _problem(
        "to-binary",
        "Read a non-negative integer n and print it in binary, without leading zeros (0 prints as 0).",
        "print(bin(int(input()))[2:])\n",
        [("0\n", "0\n"), ("5\n", "101\n"), ("255\n", "11111111\n"), ("1024\n", "10000000000\n")],
    ),
    _problem(
        "most-frequent-char",
        "Read one line and print its most frequent character other than the space; on a tie, the one that "
        "comes first in alphabetical (code point) order.",
        "from collections import Counter\ncounts = Counter(input().replace(' ', ''))\n"
        "print(min(counts, key=lambda c: (-counts[c], c)))\n",
        [("hello world\n", "l\n"), ("abcabc\n", "a\n"), ("zzz a\n", "z\n"), ("Bb b\n", "b\n")],
    ),
    _problem(
        "transpose",
        "The first line holds r and c; then r lines of c integers each follow. Print the transposed matrix: "
        "c lines of r integers, separated by single spaces.",
        "r, c = map(int, input().split())\nrows = [input().split() for _ in range(r)]\n"
        "for column in zip(*rows):\n    print(*column)\n",
        [("2 3\n1 2 3\n4 5 6\n", "1 4\n2 5\n3 6\n"), ("1 1\n7\n", "7\n"), ("3 1\n1\n2\n3\n", "1 2 3\n")],
    ),
    _problem(
        "running-sum",
        "Read integers on one line and print their running sums (the i-th is the sum of the first i), "
        "separated by single spaces.",
        "from itertools import accumulate\nprint(*accumulate(map(int, input().split())))\n",
        [("1 2 3 4\n", "1 3 6 10\n"), ("5\n", "5\n"), ("3 -3 3 -3\n", "3 0 3 0\n")],
    ),
    _problem(
        "balanced-brackets",
        "Read one line made of the characters ()[]{} and print yes if the brackets are balanced and "
        "properly nested, no otherwise.",
        "pairs = {')': '(', ']': '[', '}': '{'}\nstack = []\nok = True\nfor ch in input().strip():\n"
        "    if ch in '([{':\n        stack.append(ch)\n"
        "    elif not stack or stack.pop() != pairs[ch]:\n        ok = False\n        break\n"
        "print('yes' if ok and not stack else 'no')\n",
        [
            ("()[]{}\n", "yes\n"),
            ("([)]\n", "no\n"),
            ("{[()()]}\n", "yes\n"),
            ("((\n", "no\n"),
            ("]\n", "no\n"),
        ],
    ),
    _problem(
        "second-largest",
        "Read integers on one line and print the second largest distinct value, or none if there is none.",
        "values = sorted(set(map(int, input().split())))\nprint(values[-2] if len(values) > 1 else 'none')\n",
        [("3 1 2\n", "2\n"), ("5 5 5\n", "none\n"), ("10 9 10 8\n", "9\n"), ("-1 -2\n", "-2\n")],
    ),
]
