/* hello.c: prints a greeting and the first ten primes. Reads no input. */
#include <stdio.h>

int main(void) {
    printf("hello from c\n");
    printf("first 10 primes:");
    for (int n = 2, found = 0; found < 10; n++) {
        int prime = 1;
        for (int d = 2; d * d <= n; d++) {
            if (n % d == 0) {
                prime = 0;
                break;
            }
        }
        if (prime) {
            printf(" %d", n);
            found++;
        }
    }
    printf("\n");
    return 0;
}
