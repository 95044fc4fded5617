# hello.py: prints a greeting and the sum of the squares of 1..100. Reads no input.
print("hello from python")
print("sum of squares 1..100 =", sum(i * i for i in range(1, 101)))
