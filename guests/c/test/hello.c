/* hello: writes to stdout and stderr (the call's log), outputs "done". */
#include <stdio.h>

#include "faasm.h"

int main(void) {
    printf("hello stdout\n");
    fprintf(stderr, "hello stderr\n");
    faasmSetOutput("done", 4);
    return 0;
}
