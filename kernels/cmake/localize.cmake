# The static library: a static link puts its symbols in the user's namespace,
# so it defines as global only the functions of sparsekit.h. Its objects are
# linked into one relocatable object (ld -r: the calls between them are
# resolved there), then objcopy makes every other symbol local (the internal
# sk_* helpers and per-ISA kernels), and the archive holds that one object.
# Needs an ELF toolchain's ld and objcopy (GNU or LLVM); without them, or with
# LTO objects (which ld -r would not compile), the library is the plain
# archive of the objects, with a message. Included by CMakeLists.txt when
# SK_SHARED is off; sets SK_LOCALIZED.
set(SK_LOCALIZED OFF)
set(_sk_why "")
string(TOUPPER "${CMAKE_BUILD_TYPE}" _sk_config)
if(NOT CMAKE_EXECUTABLE_FORMAT STREQUAL "ELF")
  set(_sk_why "not an ELF target")
elseif(NOT EXISTS "${CMAKE_LINKER}")
  set(_sk_why "no linker found (CMAKE_LINKER)")
elseif(NOT EXISTS "${CMAKE_OBJCOPY}")
  set(_sk_why "no objcopy found (CMAKE_OBJCOPY; binutils)")
elseif(CMAKE_INTERPROCEDURAL_OPTIMIZATION
       OR "${CMAKE_C_FLAGS} ${CMAKE_C_FLAGS_${_sk_config}}" MATCHES "-flto")
  set(_sk_why "LTO objects")
else()
  set(SK_LOCALIZED ON)
endif()
unset(_sk_config)

if(SK_LOCALIZED)
  # The header's functions, one a line: objcopy keeps these global.
  set(_sk_dir ${CMAKE_CURRENT_BINARY_DIR}/CMakeFiles/sparsekit_localize)
  set(SK_API_LIST ${_sk_dir}/api_functions.txt)
  list(JOIN SK_API_FUNCTIONS "\n" _sk_list)
  file(WRITE ${SK_API_LIST}.tmp "${_sk_list}\n")
  configure_file(${SK_API_LIST}.tmp ${SK_API_LIST} COPYONLY)  # rewritten only when it changes
  set(_sk_public ${_sk_dir}/sparsekit.o)
  add_custom_command(
    OUTPUT ${_sk_public}
    COMMAND ${CMAKE_LINKER} -r -o ${_sk_dir}/merged.o ${SK_OBJECTS}
    COMMAND ${CMAKE_OBJCOPY} --keep-global-symbols=${SK_API_LIST} ${_sk_dir}/merged.o
            ${_sk_public}
    DEPENDS ${SK_OBJECT_TARGETS} ${SK_OBJECTS} ${SK_API_LIST}  # targets: built first
    COMMAND_EXPAND_LISTS VERBATIM
    COMMENT "Linking sparsekit.o: only the functions of sparsekit.h global")
  add_library(sparsekit STATIC ${_sk_public})
  set_target_properties(sparsekit PROPERTIES LINKER_LANGUAGE C)
  unset(_sk_list)
  unset(_sk_dir)
  unset(_sk_public)
else()
  message("sparsekit: ${_sk_why}: libsparsekit.a keeps its internal sk_* "
                 "functions global (the C core's own names all start with sk_)")
  add_library(sparsekit STATIC ${SK_OBJECTS})
endif()
unset(_sk_why)
