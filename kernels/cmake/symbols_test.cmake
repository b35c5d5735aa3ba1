# symbols_test.cmake - the installed_symbols ctest (consumer_tests.cmake
# registers it): cmake -DBUILD_DIR=... -DWORK=... -P this file.
# Installs BUILD_DIR into WORK/prefix and checks the installed library:
#  - its global defined symbols (nm) are exactly the functions of sparsekit.h;
#  - it holds none of the test hooks (internal.h's SK_TEST_HOOKS block), not
#    even as local symbols;
#  - a program that defines every internal sk_* name of the C tests' library
#    itself (each one aborts) links with it and runs: the library's calls
#    between its own functions never reach the program's.
include(${CMAKE_CURRENT_LIST_DIR}/script_run.cmake)

# The names `nm <flags> lib` lists as defined (one "address type name" line each).
function(defined_symbols out_var lib)
  run(${NM} ${ARGN} ${lib})
  string(REGEX MATCHALL "[0-9a-fA-F]+ [A-Za-z] [^\n]+" lines "${RUN_OUTPUT}")
  set(names "")
  foreach(line ${lines})
    string(REGEX REPLACE "^[0-9a-fA-F]+ [A-Za-z] " "" name "${line}")
    list(APPEND names ${name})
  endforeach()
  list(REMOVE_DUPLICATES names)
  set(${out_var} ${names} PARENT_SCOPE)
endfunction()

string(REPLACE "|" ";" EMULATOR "${EMULATOR}")
separate_arguments(LIBS UNIX_COMMAND "${LIBS}")
set(SK_HEADER_FILE ${HEADER})
include(${CMAKE_CURRENT_LIST_DIR}/api_functions.cmake)

file(REMOVE_RECURSE ${WORK})
set(prefix ${WORK}/prefix)
run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})
file(GLOB_RECURSE lib ${prefix}/*/libsparsekit.a ${prefix}/*/libsparsekit.so)
list(LENGTH lib n)
if(NOT n EQUAL 1)
  message(FATAL_ERROR "expected one libsparsekit.a or .so under ${prefix}, found: ${lib}")
endif()
get_filename_component(libdir ${lib} DIRECTORY)
file(GLOB_RECURSE header ${prefix}/*/sparsekit.h)
get_filename_component(includedir "${header}" DIRECTORY)

# The test hooks: declared in internal.h between #ifdef SK_TEST_HOOKS and #endif.
file(READ ${INTERNAL_H} internal)
string(FIND "${internal}" "#ifdef SK_TEST_HOOKS" start)
if(start GREATER -1)
  string(SUBSTRING "${internal}" ${start} -1 block)
  string(FIND "${block}" "#endif" end)
  string(SUBSTRING "${block}" 0 ${end} block)
  string(REGEX MATCHALL "sk_[a-z0-9_]+\\(" hooks "${block}")
  string(REPLACE "(" "" hooks "${hooks}")
  if(NOT hooks)
    message(FATAL_ERROR "no function found in internal.h's SK_TEST_HOOKS block")
  endif()
  defined_symbols(all ${lib} --defined-only)  # local ones too
  foreach(hook ${hooks})
    if(hook IN_LIST all)
      message(FATAL_ERROR "${lib} contains the test hook ${hook}")
    endif()
  endforeach()
endif()

if(lib MATCHES "\\.so$")
  defined_symbols(globals ${lib} -D --defined-only)
elseif(LOCALIZED)
  defined_symbols(globals ${lib} -g --defined-only)
else()
  message("SKIPPED: this build's libsparsekit.a keeps its internal functions global "
          "(see the configure message)")
  return()
endif()
set(missing ${SK_API_FUNCTIONS})
list(REMOVE_ITEM missing ${globals})
set(extra ${globals})
list(REMOVE_ITEM extra ${SK_API_FUNCTIONS})
if(missing OR extra)
  message(FATAL_ERROR "${lib}: global symbols differ from sparsekit.h's functions\n"
                      "missing: ${missing}\nnot in sparsekit.h: ${extra}")
endif()
list(LENGTH globals n)
message("${lib}: ${n} global functions, those of sparsekit.h")

# A program with its own definitions of the library's internal names.
defined_symbols(internal ${TESTING_LIB} -g --defined-only)
list(REMOVE_ITEM internal ${SK_API_FUNCTIONS})
list(LENGTH internal n)
if(n LESS 20)
  message(FATAL_ERROR "only ${n} internal functions in ${TESTING_LIB}")
endif()
set(src "#include <stdio.h>\n#include <stdlib.h>\n#include \"sparsekit.h\"\n")
foreach(name ${internal})
  string(APPEND src "void ${name}(void);\nvoid ${name}(void) { abort(); }\n")
endforeach()
string(APPEND src [=[
int main(void) {
  sk_set_num_threads(2);
  const int isa = sk_family_isa("spmm_f32");
  if (sk_get_num_threads() < 1 || isa < 0) return 1;
  printf("%s\nok\n", sk_isa_name((sk_isa)isa));
  return 0;
}
]=])
file(WRITE ${WORK}/own_names.c "${src}")
run(${CC} -std=c11 ${WORK}/own_names.c -o ${WORK}/own_names -I${includedir} -L${libdir}
    -lsparsekit ${LIBS})
set(ENV{LD_LIBRARY_PATH} ${libdir})  # for a shared build
run(${EMULATOR} ${WORK}/own_names)
if(NOT RUN_OUTPUT MATCHES "\nok\n")
  message(FATAL_ERROR "own_names did not print ok:\n${RUN_OUTPUT}")
endif()
message("a program defining ${n} of the library's internal names links and runs")
