# Two ctests that use this build the way a consumer would: install it into a
# scratch prefix in the build tree, then build kernels/examples against that
# prefix alone, once as a CMake project (find_package(sparsekit)) and once with
# the compiler and pkg-config (sparsekit.pc), and run the programs. They run
# after the build, so they reuse its library (no second compile of the core);
# in a sanitized or cross build the consumers are sanitized or cross-built too.
find_program(SK_PKG_CONFIG NAMES pkg-config pkgconf)
string(REPLACE ";" "|" SK_EMULATOR "${CMAKE_CROSSCOMPILING_EMULATOR}")
foreach(mode find_package pkg_config)
  add_test(NAME consumer_${mode}
           COMMAND ${CMAKE_COMMAND} -DMODE=${mode} -DBUILD_DIR=${CMAKE_BINARY_DIR}
                   -DWORK=${CMAKE_CURRENT_BINARY_DIR}/consumer_${mode}
                   -DEXAMPLES=${CMAKE_CURRENT_SOURCE_DIR}/examples
                   -DVERSION=${PROJECT_VERSION} -DCC=${CMAKE_C_COMPILER}
                   -DGENERATOR=${CMAKE_GENERATOR} -DMAKE_PROGRAM=${CMAKE_MAKE_PROGRAM}
                   -DBUILD_TYPE=${CMAKE_BUILD_TYPE} -DTOOLCHAIN=${CMAKE_TOOLCHAIN_FILE}
                   -DEMULATOR=${SK_EMULATOR} -DPKG_CONFIG=${SK_PKG_CONFIG}
                   -P ${CMAKE_CURRENT_SOURCE_DIR}/cmake/consumer_test.cmake)
  set_tests_properties(consumer_${mode} PROPERTIES SKIP_REGULAR_EXPRESSION "SKIPPED: ")
endforeach()

# The installed library's symbols (symbols_test.cmake): its globals are
# exactly sparsekit.h's functions, the test hooks are not in it, and a
# program may use the library's internal names for its own functions.
add_test(NAME installed_symbols
         COMMAND ${CMAKE_COMMAND} -DBUILD_DIR=${CMAKE_BINARY_DIR}
                 -DWORK=${CMAKE_CURRENT_BINARY_DIR}/installed_symbols
                 -DHEADER=${SK_HEADER_FILE}
                 -DINTERNAL_H=${CMAKE_CURRENT_SOURCE_DIR}/src/internal.h
                 -DTESTING_LIB=$<TARGET_FILE:sparsekit_testing> -DNM=${CMAKE_NM}
                 -DLOCALIZED=${SK_LOCALIZED} -DCC=${CMAKE_C_COMPILER}
                 "-DLIBS=${SK_PC_LIBS_PRIVATE}${SK_PC_LIBS_SANITIZE}"
                 -DEMULATOR=${SK_EMULATOR}
                 -P ${CMAKE_CURRENT_SOURCE_DIR}/cmake/symbols_test.cmake)
set_tests_properties(installed_symbols PROPERTIES SKIP_REGULAR_EXPRESSION "SKIPPED: ")
