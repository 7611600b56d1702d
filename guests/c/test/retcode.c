/* retcode: main returns 3 after setting the output "three". */
#include "faasm.h"

int main(void) {
    faasmSetOutput("three", 5);
    return 3;
}
