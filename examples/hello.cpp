// hello.cpp: prints a greeting and 20! computed with 64-bit integers. Reads no input.
#include <cstdint>
#include <iostream>

int main() {
    std::cout << "hello from cpp\n";
    std::uint64_t f = 1;
    for (int i = 2; i <= 20; ++i) {
        f *= i;
    }
    std::cout << "20! = " << f << "\n";
    return 0;
}
