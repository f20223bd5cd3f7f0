"""Security building blocks: small, pure, heavily tested pieces the core composes.

Origin policy, token extraction, JWT verification, live sessions and limits
each live in their own module so that each one can be read and tested alone.
"""
