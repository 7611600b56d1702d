/* exitcode: exit(7) with no output. */
#include <stdlib.h>

int main(void) {
    exit(7);
}
